//! Writing jobs: submit (the row and its first events in one transaction), append an event, cancel, delete.
//! Sequence numbers come from the row's `last_sequence` under its lock (see the module invariants of
//! [`crate::store`]).

use std::time::{Duration, SystemTime};

use prost::Message as _;
use sqlx::Row as _;
use vidmesh_proto::gateway::v1::{Job, JobEvent, JobState, Queued, Stage, job_event::Event};
use vidmesh_storage::{JobFile, JobOutputs, Storage};

use super::{Backend, Notice, Store, decode_job, now_us};

/// The PostgreSQL advisory lock key that serialises submits (any constant unique to vidmesh's submit).
const ADMISSION_LOCK: i64 = 0x7669_646d_6573_6801;
use crate::{Error, jobs};

impl Store {
    /// Stores a new job (state QUEUED) with its `accepted` and `queued` events, unless `idempotency_key` names an
    /// earlier job of the tenant (returned instead, with `false`). Refuses when the queue or the tenant's quota is
    /// full.
    pub async fn submit(
        &self,
        tenant: &str,
        job: Job,
        traceparent: &str,
        max_queued: u32,
        max_active: u32,
        retry_after: Duration,
    ) -> Result<(Job, bool), Error> {
        let request = job.request.clone().unwrap_or_default();
        let key = (!request.idempotency_key.is_empty()).then_some(request.idempotency_key.clone());
        if let Some(k) = &key {
            let row = sqlx::query("SELECT job FROM jobs WHERE tenant = $1 AND idempotency_key = $2")
                .bind(tenant)
                .bind(k.clone())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                return Ok((decode_job(&row.try_get::<Vec<u8>, _>(0)?)?, false));
            }
        }
        let priority = i64::from(request.priority);
        // The counts, the row and its first two events in one transaction that no other submit runs beside (on any
        // replica): the bounds hold however many submissions arrive at once, and a runner can never claim a job
        // whose log has not begun.
        let mut tx = self.admission().await?;
        let (active, queued) = (JobState::Running as i64, JobState::Queued as i64);
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = $1), \
                    (SELECT COUNT(*) FROM jobs WHERE tenant = $2 AND (state = $1 OR state = $3))",
        )
        .bind(queued)
        .bind(tenant)
        .bind(active)
        .fetch_one(&mut *tx)
        .await?;
        let (in_queue, tenant_active): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if in_queue >= i64::from(max_queued) {
            return Err(Error::Exhausted {
                message: format!("the queue is full ({in_queue} jobs waiting); retry later"),
                retry_after,
            });
        }
        if tenant_active >= i64::from(max_active) {
            return Err(Error::Exhausted {
                message: format!(
                    "tenant {tenant:?} has {tenant_active} jobs queued or running, its quota; retry later"
                ),
                retry_after,
            });
        }
        let ahead = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE state = $1 AND owner IS NULL AND cancel_requested = 0 AND priority >= $2",
        )
        .bind(queued)
        .bind(priority)
        .fetch_one(&mut *tx)
        .await?;
        let position = ahead.try_get::<i64, _>(0)? as u32 + 1;
        let mut job = job;
        let events = [Event::Accepted(job.clone()), Event::Queued(Queued { position })].map(|e| JobEvent {
            job_id: job.id.clone(),
            at: Some(jobs::timestamp(SystemTime::now())),
            event: Some(e),
            ..Default::default()
        });
        let events: Vec<JobEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, mut ev)| {
                ev.sequence = i as u64 + 1;
                jobs::apply(&mut job, &ev);
                ev
            })
            .collect();
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, tenant, state, priority, created_us, idempotency_key, traceparent, last_sequence, \
             job, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(job.id.clone())
        .bind(tenant)
        .bind(queued)
        .bind(priority)
        .bind(now_us())
        .bind(key.clone())
        .bind(traceparent)
        .bind(events.len() as i64)
        .bind(job.encode_to_vec())
        .bind(i64::from(position))
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            drop(tx);
            // A concurrent submit with the same idempotency key won the race: answer with its job.
            if let (Some(k), Some(db)) = (&key, e.as_database_error())
                && db.is_unique_violation()
            {
                let row = sqlx::query("SELECT job FROM jobs WHERE tenant = $1 AND idempotency_key = $2")
                    .bind(tenant)
                    .bind(k.clone())
                    .fetch_one(&self.pool)
                    .await?;
                return Ok((decode_job(&row.try_get::<Vec<u8>, _>(0)?)?, false));
            }
            return Err(e.into());
        }
        for ev in &events {
            sqlx::query("INSERT INTO job_events (job_id, sequence, event) VALUES ($1, $2, $3)")
                .bind(job.id.clone())
                .bind(ev.sequence as i64)
                .bind(ev.encode_to_vec())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.notify(Notice::Event(job.id.clone())).await?;
        self.notify(Notice::Queued).await?;
        Ok((job, true))
    }

    /// A transaction that runs alone among submits, so the queue and quota counts it reads still hold when its
    /// insert commits: SQLite takes the write lock at `BEGIN IMMEDIATE` (and has one connection), PostgreSQL a
    /// transaction-scoped advisory lock that every replica's submit takes.
    async fn admission(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ADMISSION_LOCK).execute(&mut *tx).await?;
                Ok(tx)
            }
        }
    }

    /// Appends one event to a job and moves its snapshot; returns the new job and event, or `None` if the job is
    /// missing or already final.
    pub async fn append(
        &self,
        id: &str,
        event: Event,
        progress: f64,
        eta_seconds: f64,
    ) -> Result<Option<(Job, JobEvent)>, Error> {
        self.append_if(id, event, progress, eta_seconds, None).await
    }

    /// A new queue position for a job that is still waiting (unclaimed, not being cancelled); `None` when it no
    /// longer waits — a position must never move a started job back to QUEUED.
    pub async fn announce_position(&self, id: &str, position: u32) -> Result<Option<(Job, JobEvent)>, Error> {
        self.append_if(id, Event::Queued(Queued { position }), 0.0, 0.0, Some(position)).await
    }

    async fn append_if(
        &self,
        id: &str,
        event: Event,
        progress: f64,
        eta_seconds: f64,
        waiting_at: Option<u32>,
    ) -> Result<Option<(Job, JobEvent)>, Error> {
        let mut tx = self.pool.begin().await?;
        let sql = match waiting_at {
            None => "UPDATE jobs SET last_sequence = last_sequence + 1 WHERE id = $1 RETURNING last_sequence, job",
            Some(_) => {
                "UPDATE jobs SET last_sequence = last_sequence + 1, position = $2 \
                 WHERE id = $1 AND owner IS NULL AND cancel_requested = 0 AND state = $3 RETURNING last_sequence, job"
            }
        };
        let mut query = sqlx::query(sql).bind(id);
        if let Some(p) = waiting_at {
            query = query.bind(i64::from(p)).bind(JobState::Queued as i64);
        }
        let row = query.fetch_optional(&mut *tx).await?;
        let Some(row) = row else { return Ok(None) };
        let seq: i64 = row.try_get(0)?;
        let mut job = decode_job(&row.try_get::<Vec<u8>, _>(1)?)?;
        if jobs::is_final(job.state) {
            tx.rollback().await?;
            return Ok(None);
        }
        let ev = JobEvent {
            job_id: id.to_string(),
            sequence: seq as u64,
            at: Some(jobs::timestamp(SystemTime::now())),
            progress: progress.max(job.progress),
            eta_seconds,
            event: Some(event),
        };
        jobs::apply(&mut job, &ev);
        sqlx::query("INSERT INTO job_events (job_id, sequence, event) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(seq)
            .bind(ev.encode_to_vec())
            .execute(&mut *tx)
            .await?;
        let release = if jobs::is_final(job.state) { ", owner = NULL" } else { "" };
        sqlx::query(&format!("UPDATE jobs SET state = $1, job = $2{release} WHERE id = $3"))
            .bind(i64::from(job.state))
            .bind(job.encode_to_vec())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.notify(Notice::Event(id.to_string())).await?;
        Ok(Some((job, ev)))
    }

    /// Asks for job `id` to be cancelled: a queued job is cancelled at once, a running one's owner is told (it
    /// stops within a step and records the cancellation). Final jobs are left as they are. Returns the job.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Job, Error> {
        let job = self.get(Some(tenant), id).await?;
        if jobs::is_final(job.state) {
            return Ok(job);
        }
        let row = sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 RETURNING owner")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        // With the flag set nobody can claim it any more; without an owner nobody else will finish it.
        if row.try_get::<Option<String>, _>(0)?.is_none() {
            if let Some((job, _)) = self.append(id, Event::Cancelled(Stage {}), 0.0, 0.0).await? {
                return Ok(job);
            }
        } else {
            self.notify(Notice::Cancel(id.to_string())).await?;
        }
        self.get(Some(tenant), id).await
    }

    /// Removes a final job and its events.
    pub async fn delete(&self, tenant: Option<&str>, id: &str) -> Result<(), Error> {
        let job = self.get(tenant, id).await?;
        if !jobs::is_final(job.state) {
            return Err(Error::FailedPrecondition(format!("job {id} is still running; cancel it first")));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM job_events WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a final job's outputs from `storage`, then its record (so a failure leaves the record to retry from).
    pub async fn remove(&self, storage: &dyn Storage, tenant: Option<&str>, id: &str) -> Result<(), Error> {
        let files = JobOutputs::of_job(id);
        for file in JobFile::ALL {
            storage.delete(&files.key(file)).await?;
        }
        self.delete(tenant, id).await
    }

    /// Up to `limit` finished jobs submitted before `before` (retention), oldest first.
    pub async fn expired(&self, before: SystemTime, limit: i64) -> Result<Vec<String>, Error> {
        let before_us = before.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros() as i64;
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE created_us < $1 AND state IN ($2, $3, $4) ORDER BY created_us LIMIT $5",
        )
        .bind(before_us)
        .bind(JobState::Completed as i64)
        .bind(JobState::Failed as i64)
        .bind(JobState::Cancelled as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
