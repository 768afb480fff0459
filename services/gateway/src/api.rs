//! What both public fronts (gRPC in [`crate::server`], HTTP in [`crate::http`]) do, written once: submit (validate →
//! policy → rate → store, in that order, so refused requests spend nothing), get, list, watch, cancel, delete, and
//! content downloads.
//!
//! Invariants: a caller sees only its tenant's jobs (others' are NotFound); an id that cannot be a job's
//! ([`jobs::plausible_id`]) is NotFound without reaching the store; a watch delivers every event of the job
//! after the requested sequence exactly once and in order, from whichever replica it is connected to, and ends after
//! the final event (or with UNAVAILABLE when this replica drains, to be resumed elsewhere).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use vidmesh_model::Manifest;
use vidmesh_proto::gateway::v1::conditioning::Reference;
use vidmesh_proto::gateway::v1::{ConditioningMode, GenerateRequest, Job, JobEvent, JobState};
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

    async fn submit_inner(&self, tenant: &Tenant, mut req: GenerateRequest) -> Result<Job, Error> {
        if self.shutdown.is_cancelled() {
            return Err(Error::Unavailable("the gateway is shutting down; retry on another replica".into()));
        }
        // Fields only the gateway sets.
        req.remixed_from.clear();
        if let Some(c) = req.conditioning.as_mut() {
            c.stored_key.clear();
            c.source_frames = 0;
        }
        self.admit(tenant, req).await
    }

    /// Resolves, checks and stores a job whose `remixed_from` the caller has set (or cleared).
    async fn admit(&self, tenant: &Tenant, req: GenerateRequest) -> Result<Job, Error> {
        let (reference, upload) = self.reference(tenant, &req).await?;
        let mut req = jobs::resolve(req, &self.manifest, &self.limits, reference.as_ref())?;
        self.admission.policy(&req)?;
        req.priority = req.priority.min(tenant.max_priority);
        self.admission.rate(tenant)?;
        let id = jobs::new_id();
        // An upload is stored with the job (a re-run after a crash reads it again), after every check passed.
        let stored = match (upload, req.conditioning.as_mut()) {
            (Some(bytes), Some(c)) => {
                let key = JobOutputs::of_job(&id).key(Variant::Reference);
                self.storage.put(&key, bytes, Variant::Reference.content_type()).await?;
                c.reference = None;
                c.stored_key.clone_from(&key);
                Some(key)
            }
            _ => None,
        };
        let job = Job {
            id,
            state: JobState::Queued as i32,
            request: Some(req),
            created_at: Some(jobs::timestamp(SystemTime::now())),
            ..Default::default()
        };
        let traceparent = vidmesh_runtime::telemetry::traceparent();
        let submitted = self
            .store
            .submit(
                &tenant.name,
                job,
                &traceparent,
                self.admission.max_queued,
                tenant.max_active_jobs,
                self.admission.retry_after,
            )
            .await;
        let (job, created) = match submitted {
            Ok((job, true)) => (job, true),
            other => {
                // Refused, or an idempotent repeat of an earlier job: the upload is not this job's.
                if let Some(key) = &stored
                    && let Err(e) = self.storage.delete(key).await
                {
                    tracing::warn!("could not delete the unused reference {key}: {e}");
                }
                other?
            }
        };
        tracing::info!(job_id = %job.id, created, tenant = %tenant.name, "submitted");
        Ok(job)
    }

    /// A conditioned request's reference: an upload probed (its bytes returned to be stored), or a completed job
    /// of the tenant's. Nothing is stored or computed here.
    async fn reference(
        &self,
        tenant: &Tenant,
        req: &GenerateRequest,
    ) -> Result<(Option<jobs::Reference>, Option<Bytes>), Error> {
        let Some(c) = &req.conditioning else { return Ok((None, None)) };
        let bad = |m: String| Error::InvalidArgument(m);
        match &c.reference {
            Some(Reference::Data(data)) => {
                if data.len() > self.limits.max_reference_bytes {
                    return Err(bad(format!(
                        "the reference is {} bytes; at most {} are accepted (limits.max_reference_bytes)",
                        data.len(),
                        self.limits.max_reference_bytes
                    )));
                }
                let p = vidmesh_video::media::probe(data).map_err(|e| bad(format!("the reference: {e}")))?;
                let image = p.kind == vidmesh_video::media::MediaKind::Image;
                let r = jobs::Reference { image, width: p.width, height: p.height, frames: p.frames };
                Ok((Some(r), Some(Bytes::from(data.clone()))))
            }
            Some(Reference::VideoId(id)) => {
                let source = self.get(tenant, id).await.map_err(|e| match e {
                    // Reads `no job "…": the reference video was not found`.
                    Error::NotFound(_) => {
                        Error::NotFound(format!("no job {}: the reference video was not found", jobs::quoted_id(id)))
                    }
                    e => e,
                })?;
                let result = source.result.filter(|_| source.state == JobState::Completed as i32).ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "video {id} has not completed; only a finished video is a reference"
                    ))
                })?;
                // Image→video from a job takes its video's first frame.
                let still = c.mode == ConditioningMode::ImageToVideo as i32;
                let frames = if still { 1 } else { result.frames };
                Ok((Some(jobs::Reference { image: still, width: result.width, height: result.height, frames }), None))
            }
            None => Err(bad("conditioning has no reference: send the media's bytes or a video_id".into())),
        }
    }

    /// A new job with `id`'s parameters (seed, size, frames, conditioning) and `prompt`.
    pub async fn remix(
        &self,
        tenant: &Tenant,
        id: &str,
        prompt: String,
        idempotency_key: String,
    ) -> Result<Job, Error> {
        if self.shutdown.is_cancelled() {
            return Err(Error::Unavailable("the gateway is shutting down; retry on another replica".into()));
        }
        let source = self.get(tenant, id).await?;
        if source.state != JobState::Completed as i32 {
            return Err(Error::FailedPrecondition(format!(
                "video {id} has not completed; only a finished video can be remixed"
            )));
        }
        let mut req = source.request.unwrap_or_default();
        req.prompt = prompt;
        req.idempotency_key = idempotency_key;
        req.remixed_from = id.to_string();
        if let Some(c) = req.conditioning.as_mut() {
            // The source's stored upload becomes this job's upload; a video_id reference stays as it is.
            if !c.stored_key.is_empty() {
                let data = self.storage.get(&c.stored_key).await.map_err(|e| match e {
                    vidmesh_storage::StorageError::NotFound(_) => {
                        Error::NotFound(format!("the reference of video {id} is no longer stored"))
                    }
                    e => Error::Storage(e),
                })?;
                c.reference = Some(Reference::Data(data.to_vec()));
                c.stored_key.clear();
            }
            if c.mode == ConditioningMode::Extend as i32 {
                // The request's frames are the new segment; seconds were the stitched total.
                req.seconds = 0.0;
            }
        }
        let result = self.admit(tenant, req).await;
        let outcome = if result.is_ok() { "accepted" } else { "refused" };
        self.metrics.submissions.with_label_values(&["remix", outcome]).inc();
        result
    }

    /// The tenant's job.
    pub async fn get(&self, tenant: &Tenant, id: &str) -> Result<Job, Error> {
        if !jobs::plausible_id(id) {
            return Err(Error::no_job(id));
        }
        self.store.get(Some(&tenant.name), id).await
    }

    /// A page of the tenant's jobs, and whether more follow.
    pub async fn list(&self, tenant: &Tenant, q: &ListQuery) -> Result<(Vec<Job>, bool), Error> {
        if !q.after.is_empty() && !jobs::plausible_id(&q.after) {
            return Err(Error::InvalidArgument(format!(
                "after {} is not a video id; pass the last id of the previous page",
                jobs::quoted_id(&q.after)
            )));
        }
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
        if !jobs::plausible_id(id) {
            return Err(Error::no_job(id));
        }
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
            vidmesh_storage::StorageError::NotFound(_) => {
                Error::NotFound(format!("video {id} has no stored {}", variant.file_name()))
            }
            e => Error::Storage(e),
        })?;
        Ok((bytes, variant.content_type()))
    }
}
