//! The text-encoder's Prometheus collectors (registered once per service; the second, pooled encoder's batcher
//! shares them).

use prometheus::{Histogram, IntCounterVec, IntGauge, Registry};
use vidmesh_runtime::metrics::Collectors;

/// Collectors updated by the model threads and the request path.
#[derive(Clone)]
pub struct Metrics {
    /// Prompts per model run.
    pub batch_size: Histogram,
    /// Seconds per model run.
    pub run_seconds: Histogram,
    /// Prompts waiting for the model (the per-pod load an autoscaler reads).
    pub queue_depth: IntGauge,
    /// Prompts encoded, by cache outcome (hit, miss).
    pub prompts: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = Collectors(registry);
        Ok(Self {
            batch_size: c.histogram(
                "text_encoder_batch_size",
                "Prompts per text-encoder model run",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            )?,
            run_seconds: c.histogram("text_encoder_run_seconds", "Seconds per text-encoder model run", &[])?,
            queue_depth: c.gauge("text_encoder_queue_depth", "Prompts waiting for the model")?,
            prompts: c.counters("text_encoder_prompts_total", "Prompts encoded, by cache outcome", &["cache"])?,
        })
    }
}
