//! `[dit.cache]`: step caching. The DiT is also stored as three graphs split at its first block (head: embeddings +
//! block 0; tail: the other blocks; out: final norm, projection, unpatchify), so a step can reuse the tail's last
//! residual for a row instead of running the tail. The request's tier picks the policy ([`TierPolicy`]).
//!
//! Invariants (checked by [`StepCacheSpec::validate`]): the three graphs and the tensor names are given; each tier's
//! threshold is finite and positive; `off` never skips, so a bundle without `[dit.cache]` serves only `off`.

use serde::{Deserialize, Serialize};

/// A request's step-caching tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheTier {
    /// Every step runs every block (the reference result).
    #[default]
    Off,
    /// Skips the tail where the first block's residual barely changed (small quality cost).
    Balanced,
    /// Skips more often (larger quality cost, faster).
    Fast,
}

impl CacheTier {
    /// The names requests use.
    pub const NAMES: &'static [&'static str] = &["off", "balanced", "fast"];

    /// Parses a request's `cache` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "balanced" => Some(Self::Balanced),
            "fast" => Some(Self::Fast),
            _ => None,
        }
    }

    /// The tier's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Balanced => "balanced",
            Self::Fast => "fast",
        }
    }
}

/// One graph of the split: file and sha256 (its inputs and outputs are the ones named in [`StepCacheSpec`] plus
/// the DiT's own inputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheGraph {
    /// File name, relative to the bundle directory.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

/// When a tier reuses the cached residual (the accumulated-change rule, per request).
///
/// Each step the head gives the first block's residual `r = block_output − block_input` for every row of the
/// request. `change = Σ|r − r_prev| / Σ|r_prev|` over those rows is added to an accumulator. The tail is skipped
/// when all of these hold: the step is past `warmup`, more than `final_steps` steps remain, a residual is cached,
/// fewer than `max_skips` steps in a row were skipped, and the accumulator is below `threshold`. A step that runs
/// the tail resets the accumulator and refreshes the cached residual.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// Accumulated relative change of the first block's residual below which the tail is skipped.
    pub threshold: f32,
    /// Most consecutive skipped steps.
    pub max_skips: u32,
    /// Steps at the start that always run every block.
    pub warmup: u32,
    /// Steps at the end that always run every block.
    pub final_steps: u32,
}

/// `[dit.cache]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCacheSpec {
    /// Graph inputs → `block_input`, `block_output` and what the tail and out graphs take from the head.
    pub head: CacheGraph,
    /// Blocks 1..N−1: `block_output` (and other head outputs, graph inputs) → `tail_output`.
    pub tail: CacheGraph,
    /// `tail_output` (and head outputs, graph inputs) → the DiT's output.
    pub out: CacheGraph,
    /// Head output: the hidden states entering block 0.
    pub block_input: String,
    /// Head output: the hidden states leaving block 0 (the tail's input).
    pub block_output: String,
    /// Tail output: the hidden states leaving the last block (the out graph's input).
    pub tail_output: String,
    /// Head outputs whose axis 0 is the batch row (gathered per row for the tail); the other head outputs do
    /// not depend on the batch.
    #[serde(default)]
    pub per_row: Vec<String>,
    /// The tier of requests that name none.
    #[serde(default)]
    pub default: CacheTier,
    /// The `balanced` tier.
    pub balanced: TierPolicy,
    /// The `fast` tier.
    pub fast: TierPolicy,
}

impl StepCacheSpec {
    /// The policy of a tier (`None` for `off`).
    pub fn policy(&self, tier: CacheTier) -> Option<TierPolicy> {
        match tier {
            CacheTier::Off => None,
            CacheTier::Balanced => Some(self.balanced),
            CacheTier::Fast => Some(self.fast),
        }
    }

    /// The three graphs with their manifest keys.
    pub fn graphs(&self) -> [(&'static str, &CacheGraph); 3] {
        [("head", &self.head), ("tail", &self.tail), ("out", &self.out)]
    }

    /// Checks the table; `key` is `dit.cache` or `dit2.cache`, named in every message.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        for (name, g) in self.graphs() {
            if g.file.is_empty() || g.sha256.len() != 64 {
                return Err(format!("{key}.{name} needs a file and its 64-hex-digit sha256"));
            }
        }
        for (name, v) in [
            ("block_input", &self.block_input),
            ("block_output", &self.block_output),
            ("tail_output", &self.tail_output),
        ] {
            if v.is_empty() {
                return Err(format!("{key}.{name} must name a tensor"));
            }
        }
        for (name, p) in [("balanced", &self.balanced), ("fast", &self.fast)] {
            if !(p.threshold.is_finite() && p.threshold > 0.0) {
                return Err(format!("{key}.{name}.threshold must be a positive number (got {})", p.threshold));
            }
            if p.max_skips == 0 {
                return Err(format!("{key}.{name}.max_skips must be at least 1 (a tier that never skips is `off`)"));
            }
        }
        Ok(())
    }
}
