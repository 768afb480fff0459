//! The classifier's Prometheus collectors (registered once per service).

use prometheus::{Histogram, IntCounterVec, IntGauge, Registry};
use vidmesh_runtime::metrics::Collectors;

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
        let c = Collectors(registry);
        Ok(Self {
            active: c.gauge("classifier_active_requests", "Detections admitted and not finished")?,
            requests: c.counters(
                "classifier_requests_total",
                "Finished detections by verdict or error",
                &["outcome"],
            )?,
            examine_seconds: c.histogram(
                "classifier_examine_seconds",
                "Seconds per examination",
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )?,
        })
    }
}
