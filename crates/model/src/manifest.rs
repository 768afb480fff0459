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
    /// How prompts are cleaned before tokenizing, as the family's pipeline does (format 2).
    #[serde(default)]
    pub prompt_clean: PromptClean,
    /// How prompts are padded before the encoder (format 2).
    #[serde(default)]
    pub padding: Padding,
    /// Whether the encoder sees the real attention mask (`false`: all ones, padding attended).
    #[serde(default = "yes")]
    pub encoder_mask: bool,
    /// Whether states past the real length are zeros when the DiT sees them (`false`: the encoder's padding
    /// states are kept).
    #[serde(default = "yes")]
    pub zero_pad_states: bool,
    /// Whether the DiT takes the text mask.
    #[serde(default = "yes")]
    pub dit_mask: bool,
    /// The graph's tensor names.
    #[serde(default)]
    pub names: TextEncoderNames,
}

fn yes() -> bool {
    true
}

/// `text_encoder.prompt_clean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptClean {
    /// The prompt as given.
    #[default]
    None,
    /// diffusers' Wan `prompt_clean`: HTML entities unescaped twice, curly quotes made straight (as ftfy does),
    /// runs of whitespace collapsed to one space, ends trimmed. ftfy's repair of mis-decoded text (mojibake) is
    /// not reproduced.
    Wan,
}

impl PromptClean {
    /// Applies the cleaning.
    pub fn apply(self, prompt: &str) -> String {
        match self {
            Self::None => prompt.to_string(),
            Self::Wan => {
                let once = html_escape::decode_html_entities(prompt);
                let twice = html_escape::decode_html_entities(&once);
                let straight: String = twice
                    .chars()
                    .map(|c| match c {
                        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => '\'',
                        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' => '"',
                        c => c,
                    })
                    .collect();
                straight.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// `text_encoder.padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Pad a batch to its longest prompt.
    #[default]
    Longest,
    /// Pad every prompt to `max_tokens` with the tokenizer's pad id.
    MaxLength,
}

/// `text_encoder.names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextEncoderNames {
    /// Token ids input.
    pub input_ids: String,
    /// Attention mask input.
    pub attention_mask: String,
    /// Hidden states output.
    pub hidden_states: String,
}

impl Default for TextEncoderNames {
    fn default() -> Self {
        Self {
            input_ids: "input_ids".into(),
            attention_mask: "attention_mask".into(),
            hidden_states: "hidden_states".into(),
        }
    }
}

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
    /// Overlapping windows blended (reserved for the next families).
    Windowed,
    /// The whole latent video in one run (reserved for the next families).
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
}

impl Default for VaeNames {
    fn default() -> Self {
        Self { latents: "latents".into(), video: "video".into() }
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
    /// The graph's tensor names.
    #[serde(default)]
    pub names: DitNames,
    /// How the graph's timestep is rounded from `σ·timestep_scale`.
    #[serde(default)]
    pub timestep_rounding: TimestepRounding,
    /// How classifier-free guidance runs.
    #[serde(default)]
    pub guidance: GuidanceMode,
    /// Further graph inputs and where their values come from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_inputs: Vec<ExtraInput>,
}

/// `dit.names`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DitNames {
    /// Latents input.
    pub latents: String,
    /// Timestep input.
    pub timestep: String,
    /// Text states input.
    pub text_states: String,
    /// Text mask input; empty when the graph has none.
    pub text_mask: String,
    /// Model output.
    pub output: String,
}

impl Default for DitNames {
    fn default() -> Self {
        Self {
            latents: "latents".into(),
            timestep: "timestep".into(),
            text_states: "text_states".into(),
            text_mask: "text_mask".into(),
            output: "velocity".into(),
        }
    }
}

/// `dit.timestep_rounding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepRounding {
    /// As computed.
    #[default]
    None,
    /// Toward zero (diffusers' int64 cast).
    Trunc,
    /// To the nearest integer, ties to even.
    Round,
}

impl TimestepRounding {
    /// Applies the rounding.
    pub fn apply(self, t: f32) -> f32 {
        match self {
            Self::None => t,
            Self::Trunc => t.trunc(),
            Self::Round => t.round_ties_even(),
        }
    }
}

/// `dit.guidance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuidanceMode {
    /// Cond and uncond rows in one run.
    #[default]
    CfgBatched,
    /// Cond and uncond as two runs (same numbers as batched, up to float rounding).
    CfgSeparate,
    /// One row, no negative prompt.
    None,
}

/// One extra DiT input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInput {
    /// Input name in the graph.
    pub name: String,
    /// Where its value comes from (`fps`, `guidance_x1000`, `pooled_text`).
    pub source: String,
}

/// Extra-input sources this build can fill.
pub const EXTRA_SOURCES: &[&str] = &[];

/// `[dit2]`: a second transformer for the low-noise steps (Wan 2.2 A14B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dit2Spec {
    /// The transformer (same keys as `[dit]`).
    #[serde(flatten)]
    pub dit: DitSpec,
    /// The first transformer runs while `t ≥ boundary_ratio · 1000`, this one after.
    pub boundary_ratio: f64,
    /// This transformer's CFG scale.
    pub guidance_scale: f32,
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
    pub frames: Choices,
    /// Supported [height, width] pairs (or `height` and `width` ranges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<[u32; 2]>,
    /// Supported heights, with `width`, instead of `sizes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Range>,
    /// Supported widths, with `height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<Range>,
    /// Supported fps.
    pub fps: Choices,
}

/// `{ min, max, step }`: every `min + k·step` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// Spacing.
    pub step: u32,
}

impl Range {
    /// Whether `v` is one of the range's values.
    pub fn contains(&self, v: u32) -> bool {
        v >= self.min && v <= self.max && (v - self.min).is_multiple_of(self.step.max(1))
    }

    /// Every value, in order.
    pub fn values(&self) -> Vec<u32> {
        (self.min..=self.max).step_by(self.step.max(1) as usize).collect()
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={} in steps of {}", self.min, self.max, self.step)
    }
}

/// A list of values or a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// These values.
    List(Vec<u32>),
    /// A range.
    Range(Range),
}

impl Choices {
    /// Whether `v` is allowed.
    pub fn contains(&self, v: u32) -> bool {
        match self {
            Self::List(l) => l.contains(&v),
            Self::Range(r) => r.contains(v),
        }
    }

    /// Every allowed value, in order.
    pub fn values(&self) -> Vec<u32> {
        match self {
            Self::List(l) => l.clone(),
            Self::Range(r) => r.values(),
        }
    }

    /// The largest allowed value.
    pub fn max(&self) -> u32 {
        self.values().into_iter().max().unwrap_or(0)
    }
}

impl std::fmt::Display for Choices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::List(l) => write!(f, "{l:?}"),
            Self::Range(r) => write!(f, "{r}"),
        }
    }
}

impl VideoSpec {
    /// Whether `height` × `width` is supported.
    pub fn size_ok(&self, height: u32, width: u32) -> bool {
        match (&self.height, &self.width) {
            (Some(h), Some(w)) => h.contains(height) && w.contains(width),
            _ => self.sizes.contains(&[height, width]),
        }
    }

    /// The supported sizes as people write them (`WxH`, or ranges).
    pub fn sizes_text(&self) -> Vec<String> {
        match (&self.height, &self.width) {
            (Some(h), Some(w)) => vec![format!("width {w} x height {h}")],
            _ => self.sizes.iter().map(|[h, w]| format!("{w}x{h}")).collect(),
        }
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
pub const SCHEDULERS: &[&str] = &["flow_match_euler", "flow_match_dpmpp_2m", "ddim", "dpmpp_2m", "unipc_flow"];

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

    /// Every transformer of the bundle with its manifest key: `[dit]`, then `[dit2]` when present.
    pub fn dits(&self) -> Vec<(&'static str, &DitSpec)> {
        let mut v = vec![("dit", &self.dit)];
        if let Some(d) = &self.dit2 {
            v.push(("dit2", &d.dit));
        }
        v
    }
}
