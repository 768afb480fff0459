//! The denoiser's Prometheus collectors (registered once per engine).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            batch_requests: Histogram::with_opts(
                HistogramOpts::new("denoiser_batch_requests", "Requests sharing one DiT call")
                    .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]),
            )?,
            step_seconds: Histogram::with_opts(HistogramOpts::new("denoiser_step_seconds", "Seconds per DiT call"))?,
            steps: IntCounter::new("denoiser_steps_total", "Scheduler steps run over all requests")?,
            active: IntGauge::new("denoiser_active_requests", "Requests admitted and not finished")?,
            requests: IntCounterVec::new(
                Opts::new("denoiser_requests_total", "Finished requests by outcome"),
                &["outcome"],
            )?,
            transfer_bytes: IntCounterVec::new(
                Opts::new(
                    "denoiser_transfer_bytes_total",
                    "Latent and text-state bytes moved between host and execution-provider memory (IO binding)",
                ),
                &["direction"],
            )?,
        };
        registry.register(Box::new(m.batch_requests.clone()))?;
        registry.register(Box::new(m.step_seconds.clone()))?;
        registry.register(Box::new(m.steps.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.transfer_bytes.clone()))?;
        Ok(m)
    }

    /// Counts a finished request.
    pub fn outcome(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }
}
