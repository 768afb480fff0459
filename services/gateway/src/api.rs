//! What both public fronts (gRPC in [`crate::server`], HTTP in [`crate::http`]) do, written once: submit (validate →
//! policy → rate → store, in that order, so refused requests spend nothing), get, list, watch, cancel, delete, and
//! content downloads.
//!
//! Invariants: a caller sees only its tenant's jobs (others' are NotFound); a watch delivers every event of the job
//! after the requested sequence exactly once and in order, from whichever replica it is connected to, and ends after
//! the final event (or with UNAVAILABLE when this replica drains, to be resumed elsewhere).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use vidmesh_model::Manifest;
use vidmesh_proto::gateway::v1::{GenerateRequest, Job, JobEvent, JobState};
use vidmesh_storage::{JobOutputs, Storage};

use crate::admission::{Admission, Tenant};
use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::store::{ListQuery, Notice, Store};
use crate::{Error, jobs};

/// The gateway's API, shared by both fronts.
pub struct Api {
    /// Job store.
    pub store: Store,
    /// Who may call and what.
    pub admission: Admission,
    /// The served model.
    pub manifest: Manifest,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The decoder's storage (content downloads).
    pub storage: Arc<dyn Storage>,
    /// Collectors.
    pub metrics: Metrics,
    /// Fires when the gateway starts draining.
    pub shutdown: CancellationToken,
    /// How often a watch re-reads the store without a notification.
    pub poll: Duration,
    /// Finished jobs are deleted this long after submission (0 = never); shown as `expires_at`.
    pub retention_secs: u64,
}

/// A downloadable output of a job.
pub type Variant = vidmesh_storage::JobFile;

impl Api {
    /// Admits and stores a job (see the module docs for the order of checks).
    pub async fn submit(&self, tenant: &Tenant, req: GenerateRequest, api: &str) -> Result<Job, Error> {
        let result = self.submit_inner(tenant, req).await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(Error::InvalidArgument(_)) => "invalid",
            Err(Error::PolicyRefused { .. }) => "policy",
            Err(Error::Exhausted { .. }) => "exhausted",
            Err(_) => "error",
        };
        self.metrics.submissions.with_label_values(&[api, outcome]).inc();
        result
    }

    async fn submit_inner(&self, tenant: &Tenant, req: GenerateRequest) -> Result<Job, Error> {
        if self.shutdown.is_cancelled() {
            return Err(Error::Unavailable("the gateway is shutting down; retry on another replica".into()));
        }
        let mut req = jobs::resolve(req, &self.manifest, &self.limits)?;
        self.admission.policy(&req)?;
        req.priority = req.priority.min(tenant.max_priority);
        self.admission.rate(tenant)?;
        let job = Job {
            id: jobs::new_id(),
            state: JobState::Queued as i32,
            request: Some(req),
            created_at: Some(jobs::timestamp(SystemTime::now())),
            ..Default::default()
        };
        let traceparent = vidmesh_runtime::telemetry::traceparent();
        let (job, created) = self
            .store
            .submit(
                &tenant.name,
                job,
                &traceparent,
                self.admission.max_queued,
                tenant.max_active_jobs,
                self.admission.retry_after,
            )
            .await?;
        tracing::info!(job_id = %job.id, created, tenant = %tenant.name, "submitted");
        Ok(job)
    }

    /// The tenant's job.
    pub async fn get(&self, tenant: &Tenant, id: &str) -> Result<Job, Error> {
        self.store.get(Some(&tenant.name), id).await
    }

    /// A page of the tenant's jobs, and whether more follow.
    pub async fn list(&self, tenant: &Tenant, q: &ListQuery) -> Result<(Vec<Job>, bool), Error> {
        self.store.list(&tenant.name, q).await
    }

    /// The job's events after `after` (see the module invariants).
    pub async fn watch(
        &self,
        tenant: &Tenant,
        id: &str,
        after: u64,
    ) -> Result<ReceiverStream<Result<JobEvent, Error>>, Error> {
        let job = self.get(tenant, id).await?;
        let (tx, rx) = mpsc::channel(64);
        let (store, stop, poll, id) = (self.store.clone(), self.shutdown.clone(), self.poll, job.id);
        tokio::spawn(async move {
            let mut notices = store.subscribe();
            let mut last = after;
            loop {
                let events = match store.events_after(&id, last).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for ev in events {
                    last = ev.sequence;
                    let end = matches!(
                        ev.event,
                        Some(
                            vidmesh_proto::gateway::v1::job_event::Event::Completed(_)
                                | vidmesh_proto::gateway::v1::job_event::Event::Failed(_)
                                | vidmesh_proto::gateway::v1::job_event::Event::Cancelled(_)
                        )
                    );
                    if tx.send(Ok(ev)).await.is_err() || end {
                        return;
                    }
                }
                // Wait for a notice about this job, or re-read after `poll` (notices are only hints).
                let deadline = tokio::time::sleep(poll);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            let msg = format!("the gateway is shutting down; watch again with after_sequence={last}");
                            let _ = tx.send(Err(Error::Unavailable(msg))).await;
                            return;
                        }
                        _ = tx.closed() => return,
                        _ = &mut deadline => break,
                        n = notices.recv() => match n {
                            Ok(Notice::Event(j)) if j == id => break,
                            Ok(_) => {}
                            Err(_) => break,
                        },
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Cancels the job and waits up to `wait` for it to reach a final state; returns the job as it then is.
    pub async fn cancel(&self, tenant: &Tenant, id: &str, wait: Duration) -> Result<Job, Error> {
        let mut notices = self.store.subscribe();
        let job = self.store.cancel(&tenant.name, id).await?;
        if jobs::is_final(job.state) {
            return Ok(job);
        }
        let _ = tokio::time::timeout(wait, async {
            loop {
                match tokio::time::timeout(self.poll, notices.recv()).await {
                    Ok(Ok(Notice::Event(j))) if j != id => continue,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                    _ => {}
                }
                if self.store.get(None, id).await.is_ok_and(|j| jobs::is_final(j.state)) {
                    return;
                }
            }
        })
        .await;
        self.get(tenant, id).await
    }

    /// Cancels the job if it runs, then deletes its outputs and its record.
    pub async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), Error> {
        let job = self.cancel(tenant, id, Duration::from_secs(30)).await?;
        if !jobs::is_final(job.state) {
            return Err(Error::Unavailable(format!("job {id} is still stopping; retry the delete")));
        }
        self.store.remove(self.storage.as_ref(), Some(&tenant.name), id).await
    }

    /// The bytes and content type of a finished job's output.
    pub async fn content(&self, tenant: &Tenant, id: &str, variant: Variant) -> Result<(Bytes, &'static str), Error> {
        let job = self.get(tenant, id).await?;
        if job.state != JobState::Completed as i32 {
            return Err(Error::FailedPrecondition(format!("job {id} has not completed; its content is not ready")));
        }
        let bytes = self.storage.get(&JobOutputs::of_job(id).key(variant)).await.map_err(|e| match e {
            vidmesh_storage::StorageError::NotFound(_) => Error::NotFound(format!("{id} {}", variant.file_name())),
            e => Error::Storage(e),
        })?;
        Ok((bytes, variant.content_type()))
    }
}
