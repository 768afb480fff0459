//! The decoder's Prometheus collectors (registered once per service).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
        let m = Self {
            active: IntGauge::new("decoder_active_requests", "Decodes admitted and not finished")?,
            requests: IntCounterVec::new(
                Opts::new("decoder_requests_total", "Finished decodes by outcome"),
                &["outcome"],
            )?,
            frames: IntCounter::new("decoder_frames_total", "Frames decoded and stored")?,
            decode_seconds: Histogram::with_opts(
                HistogramOpts::new("decoder_decode_seconds", "Seconds per decode, upload included")
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
        };
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.frames.clone()))?;
        registry.register(Box::new(m.decode_seconds.clone()))?;
        Ok(m)
    }
}
