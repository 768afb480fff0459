//! text-encoder configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

use serde::{Deserialize, Serialize};
use vidmesh_model::{ModelConfig, OnnxConfig};
use vidmesh_runtime::config::{Checks, Validate};
use vidmesh_runtime::{ServerConfig, TelemetryConfig};

/// What to do with a prompt longer than the model's `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Keep the first tokens (the end-of-text token stays) and report `truncated = true`.
    Truncate,
    /// Refuse with INVALID_ARGUMENT.
    Reject,
}

/// The whole service configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses and drain.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// ONNX Runtime library and execution provider.
    pub onnxruntime: OnnxConfig,
    /// Which bundle to serve.
    pub model: ModelConfig,
    /// Micro-batching of concurrent requests.
    pub batching: BatchingConfig,
    /// Embedding cache entries (prompts); 0 disables the cache except for the always-hot empty prompt.
    pub cache_capacity: usize,
    /// Default policy for prompts longer than max_tokens (a request may override it).
    pub truncation: Truncation,
    /// Most prompts one request may carry.
    pub max_prompts_per_request: usize,
    /// Longest prompt accepted, in UTF-8 bytes (refused before tokenizing).
    pub max_prompt_bytes: usize,
}

/// `[batching]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most prompts in one model run.
    pub max_batch: usize,
    /// How long the first prompt of a batch waits for company, in milliseconds.
    pub max_wait_ms: u64,
    /// Prompts waiting for the model beyond which requests are refused with RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::on(vidmesh_runtime::stage::ports::TEXT_ENCODER),
            telemetry: TelemetryConfig::default(),
            onnxruntime: OnnxConfig::default(),
            model: ModelConfig::default(),
            batching: BatchingConfig::default(),
            cache_capacity: 4096,
            truncation: Truncation::Truncate,
            max_prompts_per_request: 64,
            max_prompt_bytes: 4096,
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self { max_batch: 32, max_wait_ms: 2, queue_capacity: 1024 }
    }
}

impl Validate for Config {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks
            .section(prefix, "server", &self.server)
            .section(prefix, "telemetry", &self.telemetry)
            .section(prefix, "batching", &self.batching)
            .require(!self.model.bundle.is_empty(), format_args!("{prefix}model.bundle"), "must name a bundle")
            .at_least(format_args!("{prefix}max_prompts_per_request"), self.max_prompts_per_request, 1)
            .at_least(format_args!("{prefix}max_prompt_bytes"), self.max_prompt_bytes, 1);
        self.onnxruntime.validate(&format!("{prefix}onnxruntime."), |key, problem| {
            checks.require(false, key, problem);
        });
    }
}

impl Validate for BatchingConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.at_least(format_args!("{prefix}max_batch"), self.max_batch, 1);
        checks.at_least(format_args!("{prefix}queue_capacity"), self.queue_capacity, 1);
    }
}

#[cfg(test)]
mod tests {
    use vidmesh_runtime::config::load_vars;

    use super::*;

    #[test]
    fn zero_batch_and_queue_are_refused_by_key() {
        let err =
            load_vars::<Config>(&[("VIDMESH__BATCHING__MAX_BATCH", "0"), ("VIDMESH__BATCHING__QUEUE_CAPACITY", "0")])
                .unwrap_err()
                .to_string();
        assert!(err.contains("batching.max_batch: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("batching.queue_capacity: must be at least 1 (is 0)"), "{err}");
    }

    #[test]
    fn zero_prompts_per_request_is_refused_by_key() {
        let err = load_vars::<Config>(&[("VIDMESH__MAX_PROMPTS_PER_REQUEST", "0")]).unwrap_err().to_string();
        assert!(err.contains("max_prompts_per_request"), "{err}");
        assert!(load_vars::<Config>(&[("VIDMESH__CACHE_CAPACITY", "0")]).is_ok(), "0 disables the cache");
    }
}
