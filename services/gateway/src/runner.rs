//! Each replica's runner: claims queued jobs from the shared store (at most `max_running` at once), runs them
//! through the [`Pipeline`], renews their leases, stops them on cancel, and hands back the jobs of dead replicas.
//!
//! Invariants:
//! - A job ends with exactly one final event (completed, failed or cancelled), written by its owner — or, when the
//!   owner died, by whoever finds its lease expired (cancelled if a cancel was asked for, else re-queued and re-run).
//! - Cancel reaches the owner by notification (LISTEN/NOTIFY across replicas) and, as a fallback, at the next lease
//!   renewal; the job's pipeline future is dropped, which drops the denoiser stream (the denoiser stops within a step).
//! - On shutdown the runner stops claiming, lets running jobs finish within the drain grace, and hands back the
//!   rest so another replica (or the next start) re-runs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast::error::RecvError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::Instrument as _;
use vidmesh_proto::gateway::v1::{Job, Stage, job_event::Event};

use crate::jobs;
use crate::pipeline::Pipeline;
use crate::store::{Claimed, Lease, Notice, Release, Store};

/// The runner of one replica.
pub struct Runner {
    /// What runs the jobs.
    pub pipeline: Arc<Pipeline>,
    /// This replica's name in the store (unique per process).
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
    /// Poll interval for work and expired leases.
    pub poll: Duration,
    /// Jobs run at once.
    pub max_running: usize,
    /// How long running jobs may take to finish after shutdown.
    pub grace: Duration,
    /// Finished jobs older than this are deleted with their outputs (None = kept forever).
    pub retention: Option<Duration>,
}

type Cancels = Arc<Mutex<HashMap<String, CancellationToken>>>;

impl Runner {
    fn store(&self) -> &Store {
        &self.pipeline.store
    }

    /// Runs until `shutdown`, then drains (see the module invariants).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut notices = self.store().subscribe();
        if self.store().single_replica() {
            match self.store().release(Release::All).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!("{n} jobs of the previous run were re-queued"),
                Err(e) => tracing::error!("re-queuing the previous run's jobs: {e}"),
            }
        }
        let slots = Arc::new(Semaphore::new(self.max_running));
        let cancels: Cancels = Arc::default();
        let mut tasks = JoinSet::new();
        let mut next_poll = Instant::now();
        let mut polls = 0u64;
        loop {
            // Claim while there are free slots and queued jobs; then the jobs still waiting learn their new places.
            let mut claimed_any = false;
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                match self.store().claim(&self.owner, self.lease).await {
                    Ok(Some(claimed)) => {
                        claimed_any = true;
                        let cancel = CancellationToken::new();
                        if let Ok(mut c) = cancels.lock() {
                            c.insert(claimed.job.id.clone(), cancel.clone());
                        }
                        let (me, cancels) = (self.clone(), cancels.clone());
                        tasks.spawn(async move {
                            let id = claimed.job.id.clone();
                            me.execute(claimed, cancel).await;
                            if let Ok(mut c) = cancels.lock() {
                                c.remove(&id);
                            }
                            drop(slot);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("claiming a job: {e}");
                        break;
                    }
                }
            }
            if claimed_any && let Err(e) = self.store().announce_positions().await {
                tracing::warn!("announcing queue positions: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                notice = notices.recv() => match notice {
                    Ok(Notice::Cancel(id)) => {
                        if let Some(token) = cancels.lock().ok().and_then(|c| c.get(&id).cloned()) {
                            token.cancel();
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                Some(_) = tasks.join_next() => {}
                _ = tokio::time::sleep_until(next_poll) => {
                    next_poll = Instant::now() + self.poll;
                    if let Err(e) = self.store().release(Release::Expired).await {
                        tracing::error!("handing back expired jobs: {e}");
                    }
                    if let Ok(n) = self.store().queued().await {
                        self.pipeline.metrics.queued.set(n);
                    }
                    polls += 1;
                    if polls % 10 == 1 {
                        self.purge().await;
                    }
                }
            }
        }
        // Drain: running jobs get the grace period, then whatever is left is handed back.
        let drained = tokio::time::timeout(self.grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            match self.store().release(Release::Owner(&self.owner)).await {
                Ok(n) => tracing::warn!("drain grace over: {n} running jobs handed back to the queue"),
                Err(e) => tracing::error!("handing back running jobs: {e}"),
            }
        }
    }

    /// Deletes finished jobs past the retention, with their outputs (every replica may; deletes are idempotent).
    async fn purge(&self) {
        let Some(retention) = self.retention else { return };
        let Some(before) = std::time::SystemTime::now().checked_sub(retention) else { return };
        let ids = match self.store().expired(before, 100).await {
            Ok(ids) => ids,
            Err(e) => return tracing::error!("listing expired jobs: {e}"),
        };
        for id in ids {
            match self.store().remove(self.pipeline.storage.as_ref(), None, &id).await {
                Ok(()) => tracing::info!(job_id = %id, "deleted: past its retention"),
                Err(e) => tracing::warn!(job_id = %id, "deleting an expired job: {e}"),
            }
        }
    }

    /// Runs one claimed job to its final event, in a span that continues the submitter's trace.
    async fn execute(&self, claimed: Claimed, cancel: CancellationToken) {
        let span = tracing::info_span!("job", job_id = %claimed.job.id, attempt = claimed.attempt);
        vidmesh_runtime::telemetry::continue_trace(&span, &claimed.traceparent);
        let metrics = &self.pipeline.metrics;
        metrics.running.inc();
        let t0 = Instant::now();
        if let Some(outcome) = self.execute_traced(&claimed.job, cancel).instrument(span).await {
            metrics.jobs.with_label_values(&[outcome]).inc();
            metrics.seconds.with_label_values(&["job"]).observe(t0.elapsed().as_secs_f64());
        }
        metrics.running.dec();
    }

    async fn execute_traced(&self, job: &Job, cancel: CancellationToken) -> Option<&'static str> {
        let renew = async {
            loop {
                tokio::time::sleep(self.lease / 3).await;
                match self.store().renew(&job.id, &self.owner, self.lease).await {
                    Ok(Lease::Held) => {}
                    Ok(lease) => return lease,
                    Err(e) => tracing::warn!("renewing the lease: {e}"),
                }
            }
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => Err(Lease::CancelRequested),
            lease = renew => Err(lease),
            result = self.pipeline.run(job) => Ok(result),
        };
        let (event, progress, outcome) = match outcome {
            Ok(Ok(result)) => (Event::Completed(result), 1.0, "completed"),
            Ok(Err(failure)) => {
                let status = Status::from(failure);
                tracing::warn!(code = ?status.code(), "job failed: {}", status.message());
                let message = if matches!(status.code(), Code::Internal | Code::Unknown) {
                    format!("internal error (trace id {})", vidmesh_runtime::telemetry::current_trace_id())
                } else {
                    status.message().to_string()
                };
                (jobs::failed(status.code(), message), 0.0, "failed")
            }
            Err(Lease::CancelRequested) => (Event::Cancelled(Stage {}), 0.0, "cancelled"),
            Err(_) => {
                tracing::warn!("lost the job's lease (another replica re-queued it); stopping");
                return None;
            }
        };
        if let Err(e) = self.store().append(&job.id, event, progress, 0.0).await {
            tracing::error!("recording the job's end: {e}");
        }
        Some(outcome)
    }
}
