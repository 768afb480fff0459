//! classifier configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

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
    /// Where `uri` requests are read from (the decoder's storage).
    pub storage: StorageConfig,
    /// The bundle whose `[passive]` detector to run; `bundle` empty = no passive evidence (a warning at start-up).
    pub model: ModelConfig,
    /// ONNX Runtime library and execution provider (for the passive detector).
    pub onnxruntime: OnnxConfig,
    /// Watermark detection.
    pub watermark: WatermarkConfig,
    /// C2PA validation.
    pub c2pa: C2paConfig,
    /// Largest video accepted, in bytes (as request bytes or as a stored object).
    pub max_video_bytes: usize,
    /// Most frames the watermark detector examines per video, spread evenly over its length (every frame is still
    /// decoded; this bounds the detection work).
    pub max_frames: usize,
    /// Concurrent detections; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
}

/// `[watermark]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// 64 hex digits: the decoder's watermark key (from a Secret, e.g. `VIDMESH__WATERMARK__KEY_HEX`). Required.
    pub key_hex: String,
    /// A watermark at p-value ≤ this is "generated" (the false-positive rate the service is willing to claim).
    pub p_generated: f64,
    /// A watermark at p-value ≤ this (but above `p_generated`) makes the verdict "inconclusive".
    pub p_inconclusive: f64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self { key_hex: String::new(), p_generated: 1e-6, p_inconclusive: 1e-3 }
    }
}

/// `[c2pa]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct C2paConfig {
    /// PEM trust anchors: a manifest whose signer chains to one of them is TRUSTED. Empty = no anchors (valid
    /// manifests are reported VALID_UNTRUSTED and never decide the verdict).
    pub trust_anchors_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            storage: StorageConfig::default(),
            model: ModelConfig::default(),
            onnxruntime: OnnxConfig::default(),
            watermark: WatermarkConfig::default(),
            c2pa: C2paConfig::default(),
            max_video_bytes: 256 << 20,
            max_frames: 32,
            max_concurrent: 4,
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
