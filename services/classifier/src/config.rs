//! classifier configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

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
    /// decoded; this and `max_pixels` bound the detection work).
    pub max_frames: usize,
    /// Most pixels (frames × width × height) the watermark detector examines per video: a large video is read in
    /// fewer frames.
    pub max_pixels: usize,
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
            server: ServerConfig::on(vidmesh_runtime::stage::ports::CLASSIFIER),
            telemetry: TelemetryConfig::default(),
            storage: StorageConfig::default(),
            model: ModelConfig::default(),
            onnxruntime: OnnxConfig::default(),
            watermark: WatermarkConfig::default(),
            c2pa: C2paConfig::default(),
            max_video_bytes: 256 << 20,
            max_frames: vidmesh_watermark::Budget::default().max_frames,
            max_pixels: vidmesh_watermark::Budget::default().max_pixels,
            max_concurrent: 4,
        }
    }
}

impl Validate for Config {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks
            .section(prefix, "server", &self.server)
            .section(prefix, "telemetry", &self.telemetry)
            .section(prefix, "watermark", &self.watermark)
            .at_least(format_args!("{prefix}max_video_bytes"), self.max_video_bytes, 1)
            .at_least(format_args!("{prefix}max_frames"), self.max_frames, 1)
            .at_least(format_args!("{prefix}max_pixels"), self.max_pixels, 1)
            .at_least(format_args!("{prefix}max_concurrent"), self.max_concurrent, 1);
        checks.section(prefix, "storage", &self.storage);
        self.onnxruntime.validate(&format!("{prefix}onnxruntime."), |key, problem| {
            checks.require(false, key, problem);
        });
    }
}

impl Validate for WatermarkConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let (generated, inconclusive) = (self.p_generated, self.p_inconclusive);
        // The key may be filled in after loading (`vidmesh serve` derives a local one); it is required at start-up.
        checks
            .require(
                self.key_hex.is_empty() || vidmesh_watermark::Key::from_hex(&self.key_hex).is_some(),
                format_args!("{prefix}key_hex"),
                "must be 64 hex digits (the decoder's key)",
            )
            .require(
                generated > 0.0 && generated < 1.0,
                format_args!("{prefix}p_generated"),
                format_args!("must be a p-value above 0 and below 1 (is {generated})"),
            )
            .require(
                inconclusive > 0.0 && inconclusive < 1.0,
                format_args!("{prefix}p_inconclusive"),
                format_args!("must be a p-value above 0 and below 1 (is {inconclusive})"),
            )
            .require(
                generated <= inconclusive,
                format_args!("{prefix}p_generated"),
                format_args!("must be at most {prefix}p_inconclusive ({inconclusive}) (is {generated})"),
            );
    }
}

#[cfg(test)]
mod tests {
    use vidmesh_runtime::config::load_vars;

    use super::*;

    #[test]
    fn generated_threshold_must_not_exceed_inconclusive() {
        let err = load_vars::<Config>(&[("VIDMESH__WATERMARK__P_GENERATED", "0.01")]).unwrap_err().to_string();
        assert!(err.contains("watermark.p_generated: must be at most watermark.p_inconclusive (0.001)"), "{err}");
        let ok = load_vars::<Config>(&[
            ("VIDMESH__WATERMARK__P_GENERATED", "0.01"),
            ("VIDMESH__WATERMARK__P_INCONCLUSIVE", "0.05"),
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn p_values_must_lie_between_0_and_1() {
        let err = load_vars::<Config>(&[("VIDMESH__WATERMARK__P_INCONCLUSIVE", "1.5")]).unwrap_err().to_string();
        assert!(err.contains("watermark.p_inconclusive: must be a p-value above 0 and below 1 (is 1.5)"), "{err}");
        let err = load_vars::<Config>(&[("VIDMESH__WATERMARK__P_GENERATED", "0.0")]).unwrap_err().to_string();
        assert!(err.contains("watermark.p_generated: must be a p-value above 0 and below 1 (is 0)"), "{err}");
    }

    #[test]
    fn zero_frames_and_concurrency_are_refused_by_key() {
        let err = load_vars::<Config>(&[("VIDMESH__MAX_FRAMES", "0"), ("VIDMESH__MAX_CONCURRENT", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_frames: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("max_concurrent: must be at least 1 (is 0)"), "{err}");
    }

    #[test]
    fn the_key_may_be_empty_but_not_malformed() {
        let err = load_vars::<Config>(&[("VIDMESH__WATERMARK__KEY_HEX", "xyz")]).unwrap_err().to_string();
        assert!(err.contains("watermark.key_hex"), "{err}");
        assert!(load_vars::<Config>(&[]).unwrap().watermark.key_hex.is_empty());
    }
}
