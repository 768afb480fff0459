//! decoder configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

use serde::{Deserialize, Serialize};
use vidmesh_model::{ModelConfig, OnnxConfig};
use vidmesh_runtime::config::{Checks, Validate};
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
    /// PSNR over R, G and B each watermarked frame is brought to, in dB (lower is stronger and more visible); 0 =
    /// the default (43.3: 42.1 dB on luma, so every video stays at or above 42 dB Y-PSNR).
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
            server: ServerConfig::on(vidmesh_runtime::stage::ports::DECODER),
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

/// Highest quantiser H.264 allows.
const H264_QP_MAX: u8 = 51;

impl Validate for Config {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks
            .section(prefix, "server", &self.server)
            .section(prefix, "telemetry", &self.telemetry)
            .section(prefix, "watermark", &self.watermark)
            .section(prefix, "c2pa", &self.c2pa)
            .require(!self.model.bundle.is_empty(), format_args!("{prefix}model.bundle"), "must name a bundle")
            .at_least(format_args!("{prefix}chunk_latent_frames"), self.chunk_latent_frames, 1)
            .within(format_args!("{prefix}qp_min"), self.qp_min, 0, H264_QP_MAX)
            .within(format_args!("{prefix}qp_max"), self.qp_max, 0, H264_QP_MAX)
            .require(
                self.qp_min <= self.qp_max,
                format_args!("{prefix}qp_min"),
                format_args!("must be at most {prefix}qp_max ({}) (is {})", self.qp_max, self.qp_min),
            )
            .at_least(format_args!("{prefix}max_concurrent"), self.max_concurrent, 1)
            .at_least(format_args!("{prefix}max_request_bytes"), self.max_request_bytes, 1);
        checks.section(prefix, "storage", &self.storage);
        self.onnxruntime.validate(&format!("{prefix}onnxruntime."), |key, problem| {
            checks.require(false, key, problem);
        });
    }
}

impl Validate for WatermarkConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let psnr = self.psnr_db;
        checks
            .require(
                self.key_hex.is_empty() || vidmesh_watermark::Key::from_hex(&self.key_hex).is_some(),
                format_args!("{prefix}key_hex"),
                "must be 64 hex digits, or empty for no watermark",
            )
            .require(
                psnr.is_finite() && psnr >= 0.0,
                format_args!("{prefix}psnr_db"),
                format_args!("must be greater than 0 dB, or 0 for the default (is {psnr})"),
            );
    }
}

impl Validate for C2paConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let signing = !self.cert_chain_path.is_empty() || !self.private_key_path.is_empty();
        checks
            .require(
                !signing || !self.cert_chain_path.is_empty(),
                format_args!("{prefix}cert_chain_path"),
                format_args!("must be set with {prefix}private_key_path (or both left empty: no signing)"),
            )
            .require(
                !signing || !self.private_key_path.is_empty(),
                format_args!("{prefix}private_key_path"),
                format_args!("must be set with {prefix}cert_chain_path (or both left empty: no signing)"),
            )
            .require(
                !signing || !self.trust_anchors_path.is_empty(),
                format_args!("{prefix}trust_anchors_path"),
                "must be set when signing (each manifest is verified against it)",
            );
    }
}

#[cfg(test)]
mod tests {
    use vidmesh_runtime::config::load_vars;

    use super::*;

    #[test]
    fn qp_range_must_be_ordered_and_within_h264() {
        let err = load_vars::<Config>(&[("VIDMESH__QP_MIN", "30")]).unwrap_err().to_string();
        assert!(err.contains("qp_min: must be at most qp_max (18) (is 30)"), "{err}");
        let err = load_vars::<Config>(&[("VIDMESH__QP_MAX", "60")]).unwrap_err().to_string();
        assert!(err.contains("qp_max: must be between 0 and 51 (is 60)"), "{err}");
    }

    #[test]
    fn zero_chunk_is_refused_by_key() {
        let err = load_vars::<Config>(&[("VIDMESH__CHUNK_LATENT_FRAMES", "0")]).unwrap_err().to_string();
        assert!(err.contains("chunk_latent_frames: must be at least 1 (is 0)"), "{err}");
    }

    #[test]
    fn watermark_and_c2pa_values_are_checked() {
        let err =
            load_vars::<Config>(&[("VIDMESH__WATERMARK__PSNR_DB", "-3.5"), ("VIDMESH__WATERMARK__KEY_HEX", "abc")])
                .unwrap_err()
                .to_string();
        assert!(err.contains("watermark.psnr_db"), "{err}");
        assert!(err.contains("watermark.key_hex: must be 64 hex digits"), "{err}");
        let err =
            load_vars::<Config>(&[("VIDMESH__C2PA__CERT_CHAIN_PATH", "/etc/c2pa/chain.pem")]).unwrap_err().to_string();
        assert!(err.contains("c2pa.private_key_path: must be set with c2pa.cert_chain_path"), "{err}");
        assert!(err.contains("c2pa.trust_anchors_path"), "{err}");
        let key = "ab".repeat(32);
        assert!(load_vars::<Config>(&[("VIDMESH__WATERMARK__KEY_HEX", key.as_str())]).is_ok());
    }

    #[test]
    fn s3_storage_needs_a_bucket() {
        let err = load_vars::<Config>(&[("VIDMESH__STORAGE__BACKEND", "s3")]).unwrap_err().to_string();
        assert!(err.contains("storage.s3.bucket"), "{err}");
        let err = load_vars::<Config>(&[("VIDMESH__STORAGE__BACKEND", "gcs")]).unwrap_err().to_string();
        assert!(err.contains("storage.backend: must be \"local\" or \"s3\""), "{err}");
    }
}
