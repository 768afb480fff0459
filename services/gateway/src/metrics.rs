//! The gateway's Prometheus collectors (registered once per process).

use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use vidmesh_runtime::metrics::Collectors;

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
    /// Stage calls made again after a failure a retry may mend (a replica down or killed mid-call), by stage.
    pub retries: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the collectors.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = Collectors(registry);
        Ok(Self {
            running: c.gauge("gateway_running_jobs", "Jobs this replica is running")?,
            queued: c.gauge("gateway_queued_jobs", "Jobs waiting in the queue over all replicas")?,
            jobs: c.counters("gateway_jobs_total", "Finished jobs by outcome", &["outcome"])?,
            seconds: c.histograms(
                "gateway_stage_seconds",
                "Seconds per stage call, and per job (stage=job)",
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                &["stage"],
            )?,
            submissions: c.counters(
                "gateway_submissions_total",
                "Submissions by API and outcome",
                &["api", "outcome"],
            )?,
            retries: c.counters(
                "gateway_stage_retries_total",
                "Stage calls made again after the replica was unreachable or the connection broke",
                &["stage"],
            )?,
        })
    }
}
