//! `model.toml`, typed. Field meanings are documented in docs/model-bundle.md; [`Manifest::validate`] checks the
//! internal consistency a service relies on (every message names the offending key).

use serde::{Deserialize, Serialize};

/// A dimension of a component input or output: fixed, or named (dynamic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(u64),
    /// A dynamic axis, by name (`batch`, `tokens`, …).
    Named(String),
}

/// One graph input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Io {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Element type (`float32`, `int64`).
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<Dim>,
}

/// One ONNX file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// File name, relative to the bundle directory.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Graph inputs.
    pub inputs: Vec<Io>,
    /// Graph outputs.
    pub outputs: Vec<Io>,
}

/// `[model]`: identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name; requests address the model by it.
    pub name: String,
    /// Bundle version.
    pub version: String,
    /// One line about the model.
    #[serde(default)]
    pub description: String,
    /// Licence of the weights.
    #[serde(default)]
    pub license: String,
}

/// `[text_encoder]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderSpec {
    /// The ONNX graph.
    #[serde(flatten)]
    pub component: Component,
    /// tokenizer.json (Hugging Face tokenizers format).
    pub tokenizer: String,
    /// sha256 of the tokenizer file.
    pub tokenizer_sha256: String,
    /// Tokens per prompt, special tokens included; longer prompts are truncated or refused.
    pub max_tokens: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
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
    /// Decoders compute `z = x / latent_scale + latent_shift` before the VAE decoder.
    pub latent_shift: f64,
    /// See `latent_shift`.
    pub latent_scale: f64,
    /// Each latent frame decodes on its own (chunked decoding is exact).
    #[serde(default)]
    pub decode_chunk_independent: bool,
    /// The encoder graph.
    pub encoder: Component,
    /// The decoder graph.
    pub decoder: Component,
}

/// `[dit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DitSpec {
    /// The ONNX graph.
    #[serde(flatten)]
    pub component: Component,
    /// Patch size [t, h, w] in latent units.
    pub patch_size: [usize; 3],
    /// Transformer width.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// `flow_velocity`, `epsilon` or `v`.
    pub prediction: String,
    /// The graph's `timestep` input is sigma (flow) or t times this.
    pub timestep_scale: f64,
    /// Informative: the fused attention op.
    #[serde(default)]
    pub attention: String,
}

/// `[scheduler]`: defaults for requests that do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSpec {
    /// Scheduler kind.
    pub kind: String,
    /// Steps.
    pub steps: u32,
    /// Timestep shift.
    pub shift: f32,
    /// CFG scale.
    pub guidance: f32,
}

/// `[video]`: what the bundle supports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoSpec {
    /// Default frame count.
    pub default_frames: u32,
    /// Default height.
    pub default_height: u32,
    /// Default width.
    pub default_width: u32,
    /// Default fps.
    pub default_fps: u32,
    /// Supported frame counts.
    pub frames: Vec<u32>,
    /// Supported [height, width] pairs.
    pub sizes: Vec<[u32; 2]>,
    /// Supported fps.
    pub fps: Vec<u32>,
}

/// `[noise]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseSpec {
    /// Generator name; `philox4x32-10-boxmuller` is the only one defined.
    pub rng: String,
    /// Element type of the noise.
    pub dtype: String,
    /// Layout description.
    #[serde(default)]
    pub layout: String,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; 1.
    pub schema_version: u32,
    /// Identity.
    pub model: ModelInfo,
    /// Text encoder.
    pub text_encoder: TextEncoderSpec,
    /// VAE.
    pub vae: VaeSpec,
    /// DiT.
    pub dit: DitSpec,
    /// Scheduler defaults.
    pub scheduler: SchedulerSpec,
    /// Supported sizes.
    pub video: VideoSpec,
    /// Noise generator.
    pub noise: NoiseSpec,
    /// Passive detector of this model's outputs (used by the classifier; optional).
    #[serde(default)]
    pub passive: Option<PassiveSpec>,
}

/// `[passive]`: a frame classifier trained on this model's outputs against real footage
/// (models/vidmesh_tiny/passive.py). Its rates were measured on held-out videos and bound what may be claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveSpec {
    /// The ONNX graph: `frames` float32 [N, 3, 64, 64] RGB in [0, 1] → `logit` [N].
    #[serde(flatten)]
    pub component: Component,
    /// A video whose mean frame logit exceeds this is passive evidence of generation.
    pub threshold: f64,
    /// Held-out real videos the threshold was measured on.
    pub heldout_real_videos: u32,
    /// How many of them scored above the threshold.
    pub heldout_false_positives: u32,
    /// Held-out generated videos.
    pub heldout_generated_videos: u32,
    /// Fraction of them above the threshold.
    pub heldout_tpr: f64,
    /// Area under the ROC curve on the held-out videos.
    pub heldout_auc: f64,
}

/// Scheduler kinds a vidmesh denoiser implements (docs/schedulers.md).
pub const SCHEDULERS: &[&str] = &["flow_match_euler", "flow_match_dpmpp_2m", "ddim", "dpmpp_2m"];

impl Manifest {
    /// Parses `model.toml` text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks internal consistency; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let v = &self.video;
        let (tc, sc) = (self.vae.temporal_compression, self.vae.spatial_compression);
        let p = self.dit.patch_size;
        if self.schema_version != 1 {
            return Err(format!("schema_version {} is not supported (this build reads 1)", self.schema_version));
        }
        if tc == 0 || sc == 0 || p.contains(&0) || self.vae.latent_channels == 0 {
            return Err("vae compression, latent_channels and dit.patch_size must be positive".into());
        }
        if !(self.vae.latent_scale.is_finite() && self.vae.latent_scale != 0.0 && self.vae.latent_shift.is_finite()) {
            return Err("vae.latent_scale must be finite and non-zero, vae.latent_shift finite".into());
        }
        for &f in &v.frames {
            if f == 0 || !(f as usize).is_multiple_of(tc * p[0]) {
                return Err(format!("video.frames {f} is not a positive multiple of {}", tc * p[0]));
            }
        }
        for &[h, w] in &v.sizes {
            if h == 0 || w == 0 || !(h as usize).is_multiple_of(sc * p[1]) || !(w as usize).is_multiple_of(sc * p[2]) {
                return Err(format!("video.sizes [{h}, {w}] is not a positive multiple of the latent patch grid"));
            }
        }
        if !v.frames.contains(&v.default_frames) {
            return Err(format!("video.default_frames {} is not in video.frames", v.default_frames));
        }
        if !v.sizes.contains(&[v.default_height, v.default_width]) {
            return Err(format!(
                "video.default_height/width {}x{} is not in video.sizes",
                v.default_height, v.default_width
            ));
        }
        if !SCHEDULERS.contains(&self.scheduler.kind.as_str()) {
            return Err(format!("scheduler.kind {:?} is not one of {SCHEDULERS:?}", self.scheduler.kind));
        }
        if !["flow_velocity", "epsilon", "v"].contains(&self.dit.prediction.as_str()) {
            return Err(format!("dit.prediction {:?} is not flow_velocity, epsilon or v", self.dit.prediction));
        }
        if self.scheduler.steps == 0
            || self.scheduler.shift.is_nan()
            || self.scheduler.shift <= 0.0
            || !self.scheduler.guidance.is_finite()
        {
            return Err("scheduler.steps must be > 0, shift > 0 and guidance finite".into());
        }
        if self.noise.rng != "philox4x32-10-boxmuller" {
            return Err(format!("noise.rng {:?} is unknown", self.noise.rng));
        }
        for (key, comp, names) in [
            ("text_encoder", &self.text_encoder.component, &["input_ids", "attention_mask"][..]),
            ("dit", &self.dit.component, &["latents", "timestep", "text_states", "text_mask"][..]),
            ("vae.decoder", &self.vae.decoder, &["latents"][..]),
        ] {
            for n in names {
                if !comp.inputs.iter().any(|i| i.name == *n) {
                    return Err(format!("{key}.inputs lacks {n:?}"));
                }
            }
        }
        if self.text_encoder.max_tokens < 2 || self.text_encoder.hidden_size == 0 {
            return Err("text_encoder.max_tokens must be >= 2 and hidden_size > 0".into());
        }
        Ok(())
    }

    /// Latent shape [C, T', h, w] for a video of `frames` x `height` x `width`.
    pub fn latent_shape(&self, frames: u32, height: u32, width: u32) -> [usize; 4] {
        let (tc, sc) = (self.vae.temporal_compression, self.vae.spatial_compression);
        [self.vae.latent_channels, frames as usize / tc, height as usize / sc, width as usize / sc]
    }
}
