//! The VAE decoder graphs and how a latent video is run through them, per the bundle's `vae.decode`:
//!
//! - `independent`: each latent frame decodes alone, so the video is decoded `chunk` latent frames at a time
//!   (exact for any chunk);
//! - `whole`: the whole latent video in one run (LTX-Video, whose decoder is not causal; format-1 bundles that do
//!   not declare independence);
//! - `stateful`: a causal VAE with a feature cache (Wan, CogVideoX): the first-chunk graph decodes the first
//!   latent frames (Wan: 1; CogVideoX: `decode_chunk + T mod decode_chunk`) and returns the cache; the step graph
//!   decodes each later `decode_chunk` latent frames from the cache and returns the next one. The cache values are
//!   handed from one run to the next without copies, so memory is flat in the frame count.
//!
//! Invariant: latents are unnormalised once, per channel, `z = x / div[c] + mean[c]` in f32 ([`LatentNorm`]), then,
//! for a timestep-conditioned decoder with `decode_noise_scale` s, mixed `z ← (1 − s)·z + s·noise` with the
//! seed's decode-noise stream (same layout as the latents); chunks come out in order and together hold exactly
//! `vae.frames_of(latent frames)` frames.

use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::DynValue;
use vidmesh_model::{Bundle, DecodeMode, LatentNorm, Manifest, Onnx, VaeNames};

use crate::error::Error;

/// The decoder graphs of a bundle.
#[derive(Clone)]
pub struct Vae {
    first: Arc<Mutex<Session>>,
    step: Option<Arc<Mutex<Session>>>,
    mode: DecodeMode,
    names: VaeNames,
    cache: Vec<(String, String)>,
    norm: LatentNorm,
    /// Stateful: latent frames per step-graph run.
    decode_chunk: usize,
    /// The decoder's timestep input value (timestep-conditioned decoders).
    timestep: Option<f32>,
    /// Weight of the decode noise (0: none).
    noise_scale: f32,
    /// Windowed decode's geometry.
    windows: Option<super::windowed::Windows>,
}

/// The feature cache between two stateful runs.
pub struct Cache(Vec<DynValue>);

/// One run's frames: [3, t, H, W] in [-1, 1], with t.
pub struct Chunk {
    /// The frames, channel-major.
    pub video: Vec<f32>,
    /// Frames in the chunk.
    pub frames: usize,
}

impl Vae {
    /// Opens the bundle's decoder graph(s).
    pub fn load(bundle: &Bundle, onnx: &Onnx) -> Result<Self, Error> {
        let m = &bundle.manifest;
        let first = onnx.checked_session(bundle, "vae.decoder", &m.vae.decoder)?;
        let step = match (&m.vae.decoder_step, m.vae.decode_mode()) {
            (Some(c), DecodeMode::Stateful) => {
                Some(Arc::new(Mutex::new(onnx.checked_session(bundle, "vae.decoder_step", c)?)))
            }
            _ => None,
        };
        Ok(Self {
            first: Arc::new(Mutex::new(first)),
            step,
            mode: m.vae.decode_mode(),
            names: m.vae.names.clone(),
            cache: m.vae.cache.iter().map(|c| (c.input.clone(), c.output.clone())).collect(),
            norm: m.vae.norm(),
            decode_chunk: m.vae.decode_chunk.unwrap_or(1).max(1),
            timestep: m.vae.decode_timestep.map(|t| t as f32),
            noise_scale: m.vae.decode_noise_scale.unwrap_or(0.0) as f32,
            windows: (m.vae.decode_mode() == DecodeMode::Windowed).then(|| super::windowed::Windows {
                window: m.vae.window.unwrap_or(1),
                stride: m.vae.window_stride.unwrap_or(1),
                blend: m.vae.window_blend.unwrap_or(0),
                temporal: m.vae.temporal_compression,
            }),
        })
    }

    /// The windowing of a video of `t` latent frames, when it is decoded in blended windows.
    pub fn windows(&self, t: usize) -> Option<super::windowed::Windows> {
        self.windows.filter(|w| w.applies(t))
    }

    /// Whether decoding mixes in seeded noise (then [`Vae::slice`] needs it).
    pub fn noisy(&self) -> bool {
        self.noise_scale > 0.0
    }

    /// The chunks (start, latent frames) a video of `t` latent frames is decoded in; `chunk` is the decoder's
    /// configured chunk for `independent` VAEs.
    pub fn chunks(&self, t: usize, chunk: usize) -> Vec<(usize, usize)> {
        match self.mode {
            DecodeMode::Whole => vec![(0, t)],
            DecodeMode::Windowed => self.windows.map_or(vec![(0, t)], |w| w.chunks(t)),
            DecodeMode::Stateful => {
                let k = self.decode_chunk;
                let first = (k + t % k).min(t);
                std::iter::once((0, first)).chain((first..t).step_by(k).map(|t0| (t0, k))).collect()
            }
            DecodeMode::Independent => (0..t).step_by(chunk.max(1)).map(|t0| (t0, chunk.max(1).min(t - t0))).collect(),
        }
    }

    /// The decode mode.
    pub fn mode(&self) -> DecodeMode {
        self.mode
    }

    /// Latent frames `[t0, t0 + n)` of `latents` ([C, T', h, w], scaled), unnormalised (and mixed with `noise`, the
    /// whole video's decode noise, when the bundle says), as [C, n, h, w].
    pub fn slice(&self, latents: &[f32], shape: [usize; 4], t0: usize, n: usize, noise: Option<&[f32]>) -> Vec<f32> {
        let [c, t, h, w] = shape;
        let plane = h * w;
        let s = self.noise_scale;
        let mut z = Vec::with_capacity(c * n * plane);
        for ch in 0..c {
            let (div, mean) = (self.norm.div[ch], self.norm.mean[ch]);
            let base = (ch * t + t0) * plane;
            let range = base..base + n * plane;
            match noise {
                Some(noise) if s > 0.0 => z.extend(
                    latents[range.clone()].iter().zip(&noise[range]).map(|(x, e)| (1.0 - s) * (x / div + mean) + s * e),
                ),
                _ => z.extend(latents[range].iter().map(|x| x / div + mean)),
            }
        }
        z
    }

    /// Runs one chunk ([1, C, n, h, w] unnormalised): the first-frame (or only) graph when `cache` is `None`, else
    /// the step graph. Returns the frames and, for a stateful VAE, the next cache. Blocking.
    pub fn run(&self, z: Vec<f32>, shape: [usize; 4], cache: Option<Cache>) -> Result<(Chunk, Option<Cache>), String> {
        let [c, n, h, w] = shape;
        let input = ort::value::Tensor::from_array(([1, c, n, h, w], z)).map_err(|e| e.to_string())?;
        let mut inputs = ort::inputs![self.names.latents.as_str() => input];
        if let Some(t) = self.timestep {
            let t = ort::value::Tensor::from_array(([1usize], vec![t])).map_err(|e| e.to_string())?;
            inputs.push((self.names.timestep.as_str().into(), t.into()));
        }
        let session = match cache {
            None => &self.first,
            Some(Cache(values)) => {
                for ((name, _), v) in self.cache.iter().zip(values) {
                    inputs.push((name.as_str().into(), v.into()));
                }
                self.step.as_ref().ok_or("a cache was given but the bundle has no step graph")?
            }
        };
        let mut session = session.lock().map_err(|_| "VAE session lock poisoned".to_string())?;
        let mut outputs = session.run(inputs).map_err(|e| e.to_string())?;
        let (dims, video) =
            outputs[self.names.video.as_str()].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        if dims.len() != 5 || dims[0] != 1 || dims[1] != 3 {
            return Err(format!("{} has shape {dims:?}, expected [1, 3, frames, height, width]", self.names.video));
        }
        let chunk = Chunk { frames: dims[2] as usize, video: video.to_vec() };
        let next = if self.mode == DecodeMode::Stateful {
            let values = self
                .cache
                .iter()
                .map(|(_, out)| outputs.remove(out.as_str()).ok_or_else(|| format!("the VAE returned no {out:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            Some(Cache(values))
        } else {
            None
        };
        Ok((chunk, next))
    }
}

/// Frames a stateful run of latent frame `i` yields (for checks): the first yields 1 with `first_frame_separate`.
pub fn expected_frames(m: &Manifest, t0: usize, n: usize) -> usize {
    m.vae.frames_of(t0 + n) - m.vae.frames_of(t0)
}
