//! `[dit]` and `[dit2]`: the transformer graphs, their tensor names, timestep rounding and guidance mode.

use serde::{Deserialize, Serialize};

use super::Component;

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
    /// Step caching: the graph split at its first block and the tiers' policies (none: only `off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<super::StepCacheSpec>,
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
    /// One row, no negative prompt; the scale goes into the DiT as an input (an extra input with source
    /// `guidance_x1000`: HunyuanVideo's distilled guidance).
    Embedded,
}

/// One extra DiT input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInput {
    /// Input name in the graph.
    pub name: String,
    /// Where its value comes from (one of [`EXTRA_SOURCES`]).
    pub source: String,
}

/// Extra-input sources this build can fill: `fps` (float32 [batch], the request's frame rate: LTX-Video's RoPE is
/// scaled by it), `guidance_x1000` (float32 [batch], the CFG scale × 1000: embedded guidance) and `pooled_text`
/// (float32 [batch, pooled_size], `[text_encoder_2]`'s pooled output).
pub const EXTRA_SOURCES: &[&str] = &["fps", "guidance_x1000", "pooled_text"];

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
