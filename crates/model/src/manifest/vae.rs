//! `[vae]`: latent geometry, per-channel normalisation, the frame rule and how the decoder graphs are run.

use serde::{Deserialize, Serialize};

use super::Component;

/// How latent frames map to video frames (`vae.frame_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRule {
    /// frames = latent frames × temporal_compression.
    #[default]
    Multiple,
    /// frames = 1 + (latent frames − 1) × temporal_compression: the first frame is encoded alone.
    FirstFrameSeparate,
}

/// How the VAE decoder is run (`vae.decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// Each latent frame decodes on its own: any chunking is exact.
    Independent,
    /// Causal VAE with a feature cache: a first-frame graph, then a step graph per latent frame.
    Stateful,
    /// Overlapping windows, each decoded whole, blended where they meet (HunyuanVideo: diffusers' framewise decode).
    Windowed,
    /// The whole latent video in one run (LTX-Video: its decoder is not causal).
    Whole,
}

/// One cache tensor of a stateful VAE decoder: the step graph's input and the matching output of both graphs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheName {
    /// Input name in the step graph.
    pub input: String,
    /// Output name in the first-frame and step graphs.
    pub output: String,
}

/// `vae.names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeNames {
    /// The decoder graphs' latent input.
    pub latents: String,
    /// The decoder graphs' frame output.
    pub video: String,
    /// The decoder graph's timestep input (float32 [1], `vae.decode_timestep`); empty when it has none.
    pub timestep: String,
}

impl Default for VaeNames {
    fn default() -> Self {
        Self { latents: "latents".into(), video: "video".into(), timestep: String::new() }
    }
}

/// `[vae]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeSpec {
    /// Latent channels.
    pub latent_channels: usize,
    /// Frames per latent frame.
    pub temporal_compression: usize,
    /// Pixels per latent pixel, per side.
    pub spatial_compression: usize,
    /// Format 1: decoders compute `z = x / latent_scale + latent_shift` before the VAE decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_shift: Option<f64>,
    /// Format 1: see `latent_shift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_scale: Option<f64>,
    /// Format 2: per-channel mean (one value broadcasts): `z = x / (scaling_factor / std) + mean`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latents_mean: Vec<f64>,
    /// Format 2: per-channel standard deviation (one value broadcasts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latents_std: Vec<f64>,
    /// Format 2: scaling factor (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_factor: Option<f64>,
    /// How latent frames map to video frames.
    #[serde(default)]
    pub frame_rule: FrameRule,
    /// How the decoder graph is run (format 2; format 1 uses `decode_chunk_independent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<DecodeMode>,
    /// Format 1: each latent frame decodes on its own (chunked decoding is exact).
    #[serde(default)]
    pub decode_chunk_independent: bool,
    /// Stateful decode: latent frames per step-graph run (default 1); the first-chunk graph takes
    /// `decode_chunk + T mod decode_chunk` of the T latent frames (at most T), as CogVideoX's VAE batches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_chunk: Option<usize>,
    /// Timestep-conditioned decoder (LTX-Video): the value fed to `names.timestep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_timestep: Option<f64>,
    /// Timestep-conditioned decoder (LTX-Video): before decoding, `z ← (1 − s)·z + s·noise` with this `s` and the
    /// request seed's decode-noise stream (docs/model-bundle.md, `[noise]`); 0 or absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_noise_scale: Option<f64>,
    /// Windowed decode: latent frames per window (HunyuanVideo: 5). A video of at most `window − 1` latent frames
    /// decodes whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Windowed decode: latent frames from one window's start to the next's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_stride: Option<usize>,
    /// Windowed decode: video frames linearly blended where two windows meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_blend: Option<usize>,
    /// Stateful decode: the cache tensors, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CacheName>,
    /// The decoder graphs' tensor names.
    #[serde(default)]
    pub names: VaeNames,
    /// The encoder graph (optional in format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<Component>,
    /// The decoder graph (stateful: the first latent frame).
    pub decoder: Component,
    /// Stateful decode: the graph that decodes one more latent frame from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_step: Option<Component>,
}

/// Latent normalisation per channel: the decoder computes `z = x / div[c] + mean[c]` in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentNorm {
    /// Per-channel divisor.
    pub div: Vec<f32>,
    /// Per-channel mean.
    pub mean: Vec<f32>,
}

impl VaeSpec {
    /// The decode mode, format 1's flag included.
    pub fn decode_mode(&self) -> DecodeMode {
        self.decode.unwrap_or(if self.decode_chunk_independent { DecodeMode::Independent } else { DecodeMode::Whole })
    }

    /// Per-channel normalisation, from format 2's statistics or format 1's scalars.
    pub fn norm(&self) -> LatentNorm {
        let c = self.latent_channels;
        let per = |v: &[f64], default: f64, i: usize| match v.len() {
            0 => default,
            1 => v[0],
            _ => v.get(i).copied().unwrap_or(default),
        };
        if let (Some(scale), Some(shift)) = (self.latent_scale, self.latent_shift) {
            return LatentNorm { div: vec![scale as f32; c], mean: vec![shift as f32; c] };
        }
        let sf = self.scaling_factor.unwrap_or(1.0) as f32;
        LatentNorm {
            // f32 as diffusers computes it: (scaling_factor / std) rounded once; for sf = 1 that is 1/std.
            div: (0..c).map(|i| sf / per(&self.latents_std, 1.0, i) as f32).collect(),
            mean: (0..c).map(|i| per(&self.latents_mean, 0.0, i) as f32).collect(),
        }
    }

    /// Stateful decode: the latent frames of each graph run for `latent_frames` in all (the first run is the
    /// first-chunk graph's).
    pub fn chunks(&self, latent_frames: usize) -> Vec<usize> {
        let k = self.decode_chunk.unwrap_or(1).max(1);
        let first = (k + latent_frames % k).min(latent_frames);
        let mut v = vec![first];
        v.extend(std::iter::repeat_n(k, (latent_frames - first) / k));
        v
    }

    /// Video frames decoded from `latent_frames`.
    pub fn frames_of(&self, latent_frames: usize) -> usize {
        match self.frame_rule {
            FrameRule::Multiple => latent_frames * self.temporal_compression,
            FrameRule::FirstFrameSeparate => {
                if latent_frames == 0 {
                    0
                } else {
                    1 + (latent_frames - 1) * self.temporal_compression
                }
            }
        }
    }

    /// Latent frames for a video of `frames` (which must satisfy the frame rule).
    pub fn latent_frames(&self, frames: usize) -> usize {
        match self.frame_rule {
            FrameRule::Multiple => frames / self.temporal_compression,
            FrameRule::FirstFrameSeparate => (frames.saturating_sub(1)) / self.temporal_compression + 1,
        }
    }
}
