//! decoder configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

use serde::{Deserialize, Serialize};
use vidmesh_model::{ModelConfig, OnnxConfig};
use vidmesh_runtime::{ServerConfig, TelemetryConfig};
use vidmesh_storage::StorageConfig;

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
    /// Where videos and thumbnails go.
    pub storage: StorageConfig,
    /// Latent frames decoded per VAE run; bounds peak memory whatever the video length.
    pub chunk_latent_frames: usize,
    /// H.264 quantiser range (lower is better quality).
    pub qp_min: u8,
    /// See `qp_min`.
    pub qp_max: u8,
    /// Concurrent decodes; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            onnxruntime: OnnxConfig::default(),
            model: ModelConfig::default(),
            storage: StorageConfig::default(),
            chunk_latent_frames: 2,
            qp_min: 18,
            qp_max: 24,
            max_concurrent: 4,
            max_request_bytes: 64 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deserialize() {
        let c: Config = vidmesh_runtime::config::load(None, &Default::default()).unwrap();
        assert_eq!(c, Config::default());
    }
}
