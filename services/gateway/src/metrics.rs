//! The gateway's Prometheus collectors (registered once per process).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Collectors updated by the API and the runner.
#[derive(Clone)]
pub struct Metrics {
    /// Jobs this replica is running now (the per-pod load an autoscaler reads).
    pub running: IntGauge,
    /// Jobs waiting in the shared queue (all replicas; refreshed by every replica's runner).
    pub queued: IntGauge,
    /// Finished jobs by outcome (completed, failed, cancelled).
    pub jobs: IntCounterVec,
    /// Seconds per stage call of a job (stage = text-encoder, denoiser, decoder, classifier) and per whole job
    /// (stage = job).
    pub seconds: HistogramVec,
    /// Submissions by API (grpc, http) and outcome (accepted, or the refusal's code).
    pub submissions: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            running: IntGauge::new("gateway_running_jobs", "Jobs this replica is running")?,
            queued: IntGauge::new("gateway_queued_jobs", "Jobs waiting in the queue over all replicas")?,
            jobs: IntCounterVec::new(Opts::new("gateway_jobs_total", "Finished jobs by outcome"), &["outcome"])?,
            seconds: HistogramVec::new(
                HistogramOpts::new("gateway_stage_seconds", "Seconds per stage call, and per job (stage=job)")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
                &["stage"],
            )?,
            submissions: IntCounterVec::new(
                Opts::new("gateway_submissions_total", "Submissions by API and outcome"),
                &["api", "outcome"],
            )?,
        };
        registry.register(Box::new(m.running.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.jobs.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.submissions.clone()))?;
        Ok(m)
    }
}
