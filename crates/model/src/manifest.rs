//! `model.toml`, typed. Field meanings are documented in docs/model-bundle.md; [`Manifest::validate`] checks the
//! internal consistency a service relies on (every message names the offending key).

use serde::{Deserialize, Serialize};

mod cache;
mod dit;
mod text;
mod vae;
mod video;

pub use cache::{CacheGraph, CacheTier, StepCacheSpec, TierPolicy};
pub use dit::{Dit2Spec, DitNames, DitSpec, EXTRA_SOURCES, ExtraInput, GuidanceMode, TimestepRounding};
pub use text::{Padding, PromptClean, TextEncoder2Names, TextEncoder2Spec, TextEncoderNames, TextEncoderSpec};
pub use vae::{CacheName, DecodeMode, FrameRule, LatentNorm, VaeNames, VaeSpec};
pub use video::{Choices, Range, VideoSpec};

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

/// A file beside a graph: ONNX external data (weights stored outside the protobuf, needed above its 2 GB limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// File name, relative to the bundle directory (as the graph's external-data `location` names it).
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

/// One ONNX file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// File name, relative to the bundle directory.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// ONNX external-data files of this graph, each checked like the graph (format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<DataFile>,
    /// How the weights are stored: `float32` (default), `float16`, `bfloat16`, or an int8 scheme
    /// (`int8-per-row`); graph inputs and outputs keep the types `inputs`/`outputs` declare.
    #[serde(default = "float32")]
    pub weights: String,
    /// Graph inputs.
    pub inputs: Vec<Io>,
    /// Graph outputs.
    pub outputs: Vec<Io>,
}

fn float32() -> String {
    "float32".into()
}

/// Weight storage types a bundle may declare.
pub const WEIGHTS: &[&str] = &["float32", "float16", "bfloat16", "int8-per-row"];

impl Component {
    /// Every file of the component (the graph first, then its external data) with its sha256.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.file.as_str(), self.sha256.as_str()))
            .chain(self.external_data.iter().map(|d| (d.file.as_str(), d.sha256.as_str())))
    }

    /// The declared input called `name`.
    pub fn input(&self, name: &str) -> Option<&Io> {
        self.inputs.iter().find(|i| i.name == name)
    }
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

/// `[scheduler]`: defaults for requests that do not say, and the family's fixed schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSpec {
    /// Scheduler kind.
    pub kind: String,
    /// Steps.
    pub steps: u32,
    /// Timestep shift (static; ignored where `dynamic_shift` is set).
    pub shift: f32,
    /// CFG scale.
    pub guidance: f32,
    /// `flow_match_euler` only (LTX-Video): the shift follows the latent token count (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_shift: Option<DynamicShift>,
    /// `flow_match_euler` only (LTX-Video): the shifted sigmas are stretched so the last one is this (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_terminal: Option<f64>,
    /// `cogvideox_ddim` / `cogvideox_dpm` only: ᾱ ← ᾱ / (s + (1 − s)·ᾱ) before the zero-terminal-SNR rescale
    /// (CogVideoX 2B: 3.0, 5B: 1.0; format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr_shift_scale: Option<f64>,
    /// `cogvideox_ddim` / `cogvideox_dpm` only: CogVideoXPipeline's `use_dynamic_cfg` (the guidance scale rises
    /// with a cosine over the timestep; format 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_cfg: bool,
    /// CFG rescale φ in [0, 1] (arXiv 2305.08891 §3.4, diffusers' `guidance_rescale`; LTX-Video): the guided output
    /// is mixed with itself rescaled to the conditional output's standard deviation. Default 0 (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_rescale: Option<f32>,
}

/// `scheduler.dynamic_shift`: diffusers' `calculate_shift` — μ is linear in the latent token count (latent frames ×
/// height × width over the DiT's patch volume) between (`base_seq_len`, `base_shift`) and (`max_seq_len`,
/// `max_shift`), and sigma ← e^μ / (e^μ + 1/σ − 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicShift {
    /// Token count where μ = `base_shift`.
    pub base_seq_len: f64,
    /// Token count where μ = `max_shift`.
    pub max_seq_len: f64,
    /// μ at `base_seq_len`.
    pub base_shift: f64,
    /// μ at `max_seq_len`.
    pub max_shift: f64,
}

impl DynamicShift {
    /// μ for `tokens` latent tokens, as diffusers computes it (f64).
    pub fn mu(&self, tokens: usize) -> f64 {
        let m = (self.max_shift - self.base_shift) / (self.max_seq_len - self.base_seq_len);
        let b = self.base_shift - m * self.base_seq_len;
        tokens as f64 * m + b
    }
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
    /// Second text encoder with a pooled output (optional; HunyuanVideo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder_2: Option<TextEncoder2Spec>,
    /// VAE.
    pub vae: VaeSpec,
    /// DiT.
    pub dit: DitSpec,
    /// Second transformer for the low-noise steps (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dit2: Option<Dit2Spec>,
    /// Scheduler defaults.
    pub scheduler: SchedulerSpec,
    /// Supported sizes.
    pub video: VideoSpec,
    /// Noise generator.
    pub noise: NoiseSpec,
    /// Passive detector of this model's outputs (used by the classifier; optional).
    #[serde(default)]
    pub passive: Option<PassiveSpec>,
    /// Image and video conditioning the model supports (none when absent).
    #[serde(default)]
    pub conditioning: crate::conditioning::ConditioningSpec,
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
pub const SCHEDULERS: &[&str] =
    &["flow_match_euler", "flow_match_dpmpp_2m", "ddim", "dpmpp_2m", "unipc_flow", "cogvideox_ddim", "cogvideox_dpm"];

impl Manifest {
    /// Parses `model.toml` text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Latent shape [C, T', h, w] for a video of `frames` x `height` x `width` (the frame rule applied).
    pub fn latent_shape(&self, frames: u32, height: u32, width: u32) -> [usize; 4] {
        let sc = self.vae.spatial_compression;
        [self.vae.latent_channels, self.vae.latent_frames(frames as usize), height as usize / sc, width as usize / sc]
    }

    /// Whether the model takes a negative prompt (classifier-free guidance with an unconditional row); `false` for
    /// guidance modes `none` and `embedded`.
    pub fn takes_negative(&self) -> bool {
        !matches!(self.dit.guidance, GuidanceMode::None | GuidanceMode::Embedded)
    }

    /// Every transformer of the bundle with its manifest key: `[dit]`, then `[dit2]` when present.
    pub fn dits(&self) -> Vec<(&'static str, &DitSpec)> {
        let mut v = vec![("dit", &self.dit)];
        if let Some(d) = &self.dit2 {
            v.push(("dit2", &d.dit));
        }
        v
    }
}
