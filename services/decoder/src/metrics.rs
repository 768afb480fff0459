//! The decoder's Prometheus collectors (registered once per service).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use vidmesh_runtime::metrics::Collectors;

/// Collectors updated by the request path.
#[derive(Clone)]
pub struct Metrics {
    /// Decodes running now (the per-pod load an autoscaler reads).
    pub active: IntGauge,
    /// Finished decodes by outcome (completed, failed).
    pub requests: IntCounterVec,
    /// Frames decoded and stored.
    pub frames: IntCounter,
    /// Seconds per decode (VAE + watermark + MP4 + C2PA + upload).
    pub decode_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = Collectors(registry);
        Ok(Self {
            active: c.gauge("decoder_active_requests", "Decodes admitted and not finished")?,
            requests: c.counters("decoder_requests_total", "Finished decodes by outcome", &["outcome"])?,
            frames: c.counter("decoder_frames_total", "Frames decoded and stored")?,
            decode_seconds: c.histogram(
                "decoder_decode_seconds",
                "Seconds per decode, upload included",
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
            )?,
        })
    }
}
