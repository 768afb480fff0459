//! The denoiser's Prometheus collectors (registered once per service).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use vidmesh_runtime::metrics::Collectors;

/// Collectors updated by the model thread and the admission path.
#[derive(Clone)]
pub struct Metrics {
    /// Requests sharing one DiT call (one observation per step-level batch).
    pub batch_requests: Histogram,
    /// Seconds per DiT call.
    pub step_seconds: Histogram,
    /// Scheduler steps run, over all requests.
    pub steps: IntCounter,
    /// Requests being denoised or waiting for the model thread.
    pub active: IntGauge,
    /// Finished requests by outcome (completed, cancelled, deadline_exceeded, failed, rejected).
    pub requests: IntCounterVec,
    /// Bytes of latents and text states the device-resident loop moved between host memory and the execution
    /// provider's memory, by direction (`to_device`, `to_host`). Counted on the CPU provider too, where the
    /// "device" is host memory, so tests can show that a step with an unchanged batch moves none.
    pub transfer_bytes: IntCounterVec,
    /// Steps whose DiT tail a request skipped (step caching), and steps it ran, over requests with a tier.
    pub cache_steps: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = Collectors(registry);
        Ok(Self {
            batch_requests: c.histogram(
                "denoiser_batch_requests",
                "Requests sharing one DiT call",
                &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0],
            )?,
            step_seconds: c.histogram("denoiser_step_seconds", "Seconds per DiT call", &[])?,
            steps: c.counter("denoiser_steps_total", "Scheduler steps run over all requests")?,
            active: c.gauge("denoiser_active_requests", "Requests admitted and not finished")?,
            requests: c.counters("denoiser_requests_total", "Finished requests by outcome", &["outcome"])?,
            transfer_bytes: c.counters(
                "denoiser_transfer_bytes_total",
                "Latent and text-state bytes moved between host and execution-provider memory (IO binding)",
                &["direction"],
            )?,
            cache_steps: c.counters(
                "denoiser_cache_steps_total",
                "Steps of requests with a step-caching tier, by whether the DiT tail was skipped or run",
                &["tail"],
            )?,
        })
    }

    /// Counts a finished request.
    pub fn outcome(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }
}
