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
    /// H.264 quantiser range (lower is better quality). The default 12–18 keeps the watermark for later
    /// re-encodes (docs/detection.md).
    pub qp_min: u8,
    /// See `qp_min`.
    pub qp_max: u8,
    /// Concurrent decodes; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: usize,
    /// Invisible watermark.
    pub watermark: WatermarkConfig,
    /// C2PA signing.
    pub c2pa: C2paConfig,
}

/// `[watermark]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// 64 hex digits (a 256-bit key, from a Secret in production, e.g. `VIDMESH__WATERMARK__KEY_HEX`); empty = videos
    /// are not watermarked (a warning is logged at start-up).
    pub key_hex: String,
    /// PSNR each watermarked frame is brought to, in dB (lower is stronger and more visible); 0 = the default
    /// (42.2, so every video stays at or above 42 dB).
    pub psnr_db: f64,
    /// The generator id (0–255) the watermark's payload carries with each job's tag: which deployment or bundle
    /// made a video. Payloads are carried only by videos of at least 256×256 pixels × 16 frames.
    pub generator_id: u8,
}

/// `[c2pa]`: the signing credentials; all empty = videos are not signed (a warning is logged at start-up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct C2paConfig {
    /// PEM certificate chain (leaf first; CA-issued, c2pa refuses self-signed leaves).
    pub cert_chain_path: String,
    /// PEM PKCS#8 ES256 private key of the leaf.
    pub private_key_path: String,
    /// PEM trust anchors used to verify each manifest right after signing.
    pub trust_anchors_path: String,
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
            qp_min: 12,
            qp_max: 18,
            max_concurrent: 4,
            max_request_bytes: 64 << 20,
            watermark: WatermarkConfig::default(),
            c2pa: C2paConfig::default(),
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
