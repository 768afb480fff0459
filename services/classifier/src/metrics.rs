//! The classifier's Prometheus collectors (registered once per service).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Collectors updated by the request path.
#[derive(Clone)]
pub struct Metrics {
    /// Detections running now (the per-pod load an autoscaler reads).
    pub active: IntGauge,
    /// Finished detections by verdict (generated, inconclusive, not_detected) or `error`.
    pub requests: IntCounterVec,
    /// Seconds per examination (decode + watermark + C2PA + passive).
    pub examine_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            active: IntGauge::new("classifier_active_requests", "Detections admitted and not finished")?,
            requests: IntCounterVec::new(
                Opts::new("classifier_requests_total", "Finished detections by verdict or error"),
                &["outcome"],
            )?,
            examine_seconds: Histogram::with_opts(
                HistogramOpts::new("classifier_examine_seconds", "Seconds per examination")
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
        };
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.examine_seconds.clone()))?;
        Ok(m)
    }
}
