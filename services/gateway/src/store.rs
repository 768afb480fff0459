//! The durable job store: SQLite (one replica, the embedded default) or PostgreSQL (any number of replicas), one
//! code path through sqlx's `Any` driver. A job is a row (queryable columns plus the `gateway.v1.Job` snapshot as
//! protobuf) and an append-only event log; notifications ([`Notice`]) wake watchers and runners — in process, and
//! across replicas through PostgreSQL's LISTEN/NOTIFY.
//!
//! Invariants:
//! - Event sequence numbers of a job are 1, 2, 3, … without gaps: an append increments `last_sequence` with an
//!   `UPDATE … RETURNING`, which serialises appends to one job on its row lock.
//! - A job in a final state gets no more events.
//! - A queued job is claimed by exactly one replica (`owner`), and only while no cancel was asked for; the owner
//!   renews a lease; jobs whose lease ran out are re-queued (or finished as cancelled) by whoever notices first.
//! - Notifications are hints: every reader re-reads the store, so a lost notification only delays, never loses.

use std::time::{Duration, SystemTime};

use prost::Message as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};
use tokio::sync::broadcast;
use vidmesh_proto::gateway::v1::{Job, JobEvent, JobState, Queued, Stage, job_event::Event};

use crate::Error;
use crate::config::StoreConfig;
use crate::jobs;

/// A hint that something changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A job got events.
    Event(String),
    /// A cancel was asked for this running job.
    Cancel(String),
    /// A job was queued (runners look for work).
    Queued,
}

const CHANNEL: &str = "vidmesh_jobs";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A claimed job, ready to run.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job as stored.
    pub job: Job,
    /// The W3C traceparent of the call that submitted it (empty if none).
    pub traceparent: String,
    /// How many times it was claimed (1 = first run).
    pub attempt: i64,
}

/// What a lease renewal found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lease {
    /// Still ours; carry on.
    Held,
    /// Still ours, but a cancel was asked for.
    CancelRequested,
    /// No longer ours (it expired and another replica re-queued the job).
    Lost,
}

/// Which claimed jobs [`Store::release`] hands back.
#[derive(Debug, Clone, Copy)]
pub enum Release<'a> {
    /// This replica's (it is shutting down without finishing them).
    Owner(&'a str),
    /// Those whose owner stopped renewing its lease (it died).
    Expired,
    /// All (start-up of the single SQLite replica: every claim is a leftover of a previous run).
    All,
}

/// Where to list from.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Jobs after this id in the listing order.
    pub after: String,
    /// Page size.
    pub limit: u32,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Only these states (empty = all).
    pub states: Vec<i32>,
}

/// The job store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    notices: broadcast::Sender<Notice>,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros() as i64
}

fn decode_job(bytes: &[u8]) -> Result<Job, Error> {
    Job::decode(bytes).map_err(|e| Error::Internal(format!("stored job does not decode: {e}")))
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        state BIGINT NOT NULL,
        priority BIGINT NOT NULL,
        created_us BIGINT NOT NULL,
        idempotency_key TEXT,
        traceparent TEXT NOT NULL,
        owner TEXT,
        lease_until_us BIGINT NOT NULL DEFAULT 0,
        cancel_requested BIGINT NOT NULL DEFAULT 0,
        attempts BIGINT NOT NULL DEFAULT 0,
        last_sequence BIGINT NOT NULL DEFAULT 0,
        job BLOB NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key)",
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority, id)",
    "CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, id)",
    "CREATE TABLE IF NOT EXISTS job_events (
        job_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (job_id, sequence))",
];

impl Store {
    /// Connects, creates the schema if missing, and (PostgreSQL) starts listening for other replicas' notices.
    pub async fn connect(config: &StoreConfig) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let (backend, url, max) = if config.url.starts_with("sqlite:") {
            let url = if config.url.contains('?') { config.url.clone() } else { format!("{}?mode=rwc", config.url) };
            // One connection: SQLite has one writer anyway, and it rules out lock-upgrade failures.
            (Backend::Sqlite, url, 1)
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            (Backend::Postgres, config.url.clone(), config.max_connections.max(2))
        } else {
            return Err(Error::InvalidArgument(format!(
                "store.url must start with sqlite:// or postgres://, not {:?}",
                config.url.split(':').next().unwrap_or("")
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout=10000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        for ddl in SCHEMA {
            let ddl = if backend == Backend::Postgres { ddl.replace("BLOB", "BYTEA") } else { ddl.to_string() };
            sqlx::query(&ddl).execute(&pool).await?;
        }
        let (notices, _) = broadcast::channel(1024);
        if backend == Backend::Postgres {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            let tx = notices.clone();
            tokio::spawn(async move {
                loop {
                    match listener.recv().await {
                        Ok(n) => {
                            let notice = match n.payload().split_once(':') {
                                Some(("e", id)) => Notice::Event(id.to_string()),
                                Some(("c", id)) => Notice::Cancel(id.to_string()),
                                _ => Notice::Queued,
                            };
                            let _ = tx.send(notice);
                        }
                        Err(e) => {
                            tracing::warn!("job store LISTEN: {e}; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        Ok(Self { pool, backend, notices })
    }

    /// Notices from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    async fn notify(&self, notice: Notice) -> Result<(), Error> {
        match self.backend {
            // The local broadcast is the only audience.
            Backend::Sqlite => {
                let _ = self.notices.send(notice);
            }
            // Every replica, this one included, hears it back through LISTEN.
            Backend::Postgres => {
                let payload = match &notice {
                    Notice::Event(id) => format!("e:{id}"),
                    Notice::Cancel(id) => format!("c:{id}"),
                    Notice::Queued => "q".to_string(),
                };
                sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

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
        let (active, queued) = (JobState::Running as i64, JobState::Queued as i64);
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = $1), \
                    (SELECT COUNT(*) FROM jobs WHERE tenant = $2 AND (state = $1 OR state = $3))",
        )
        .bind(queued)
        .bind(tenant)
        .bind(active)
        .fetch_one(&self.pool)
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
        let priority = i64::from(request.priority);
        // The row and its first two events commit together: a runner can never claim a job whose log has not begun.
        let mut tx = self.pool.begin().await?;
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
            "INSERT INTO jobs (id, tenant, state, priority, created_us, idempotency_key, traceparent, last_sequence, job) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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

    async fn queue_position(&self, id: &str, priority: i64) -> Result<u32, Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE state = $1 AND owner IS NULL AND cancel_requested = 0 \
             AND (priority > $2 OR (priority = $2 AND id < $3))",
        )
        .bind(JobState::Queued as i64)
        .bind(priority)
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as u32 + 1)
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
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query("UPDATE jobs SET last_sequence = last_sequence + 1 WHERE id = $1 RETURNING last_sequence, job")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
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

    /// The tenant's job `id` (`tenant` None = any tenant).
    pub async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Job, Error> {
        let row = sqlx::query("SELECT job, tenant FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        match row {
            Some(row) if tenant.is_none_or(|t| row.try_get::<String, _>(1).is_ok_and(|owner| owner == t)) => {
                decode_job(&row.try_get::<Vec<u8>, _>(0)?)
            }
            _ => Err(Error::NotFound(id.to_string())),
        }
    }

    /// A page of the tenant's jobs and whether more follow.
    pub async fn list(&self, tenant: &str, q: &ListQuery) -> Result<(Vec<Job>, bool), Error> {
        let limit = if q.limit == 0 { 20 } else { q.limit.min(100) } as i64;
        let (cmp, order) = if q.ascending { (">", "ASC") } else { ("<", "DESC") };
        let mut sql = "SELECT job FROM jobs WHERE tenant = $1".to_string();
        if !q.after.is_empty() {
            sql.push_str(&format!(" AND id {cmp} $2"));
        }
        let states: Vec<String> = q.states.iter().map(|s| s.to_string()).collect();
        if !states.is_empty() {
            // Integers from the enum, not caller text: safe to inline.
            sql.push_str(&format!(" AND state IN ({})", states.join(",")));
        }
        sql.push_str(&format!(" ORDER BY id {order} LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql).bind(tenant);
        if !q.after.is_empty() {
            query = query.bind(q.after.clone());
        }
        let rows: Vec<AnyRow> = query.fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > limit;
        let jobs = rows
            .iter()
            .take(limit as usize)
            .map(|r| decode_job(&r.try_get::<Vec<u8>, _>(0)?))
            .collect::<Result<_, _>>()?;
        Ok((jobs, more))
    }

    /// Events of `id` with sequence above `after`, in order.
    pub async fn events_after(&self, id: &str, after: u64) -> Result<Vec<JobEvent>, Error> {
        let rows = sqlx::query("SELECT event FROM job_events WHERE job_id = $1 AND sequence > $2 ORDER BY sequence")
            .bind(id)
            .bind(after as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                JobEvent::decode(r.try_get::<Vec<u8>, _>(0)?.as_slice())
                    .map_err(|e| Error::Internal(format!("stored event does not decode: {e}")))
            })
            .collect()
    }

    /// Claims the next queued job (highest priority, then oldest) for `owner`, or `None`.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Option<Claimed>, Error> {
        let pick = "SELECT id FROM jobs WHERE state = $3 AND owner IS NULL AND cancel_requested = 0 \
                    ORDER BY priority DESC, id ASC LIMIT 1";
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET owner = $1, lease_until_us = $2, attempts = attempts + 1 \
             WHERE id = ({pick}{lock}) AND owner IS NULL RETURNING job, traceparent, attempts"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(now_us() + lease.as_micros() as i64)
            .bind(JobState::Queued as i64)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Claimed {
            job: decode_job(&row.try_get::<Vec<u8>, _>(0)?)?,
            traceparent: row.try_get(1)?,
            attempt: row.try_get(2)?,
        }))
    }

    /// Renews `owner`'s lease on `id`.
    pub async fn renew(&self, id: &str, owner: &str, lease: Duration) -> Result<Lease, Error> {
        let row =
            sqlx::query("UPDATE jobs SET lease_until_us = $1 WHERE id = $2 AND owner = $3 RETURNING cancel_requested")
                .bind(now_us() + lease.as_micros() as i64)
                .bind(id)
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            None => Lease::Lost,
            Some(r) if r.try_get::<i64, _>(0)? != 0 => Lease::CancelRequested,
            Some(_) => Lease::Held,
        })
    }

    /// Hands back claimed jobs (see [`Release`]). Each is re-queued (state QUEUED, `queued` event) or, when a
    /// cancel was asked for, finished as cancelled. Returns how many were handed back.
    pub async fn release(&self, which: Release<'_>) -> Result<usize, Error> {
        let returning = "RETURNING id, cancel_requested, priority";
        let rows = match which {
            Release::Owner(o) => {
                sqlx::query(&format!("UPDATE jobs SET owner = NULL WHERE owner = $1 {returning}"))
                    .bind(o)
                    .fetch_all(&self.pool)
                    .await?
            }
            Release::Expired => {
                sqlx::query(&format!(
                    "UPDATE jobs SET owner = NULL WHERE owner IS NOT NULL AND lease_until_us < $1 {returning}"
                ))
                .bind(now_us())
                .fetch_all(&self.pool)
                .await?
            }
            Release::All => {
                sqlx::query(&format!("UPDATE jobs SET owner = NULL WHERE owner IS NOT NULL {returning}"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        for row in &rows {
            let id: String = row.try_get(0)?;
            if row.try_get::<i64, _>(1)? != 0 {
                self.append(&id, Event::Cancelled(Stage {}), 0.0, 0.0).await?;
            } else {
                let position = self.queue_position(&id, row.try_get(2)?).await?;
                tracing::warn!(job = %id, "re-queued: its runner stopped before it finished");
                self.append(&id, Event::Queued(Queued { position }), 0.0, 0.0).await?;
            }
        }
        if !rows.is_empty() {
            self.notify(Notice::Queued).await?;
        }
        Ok(rows.len())
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
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), Error> {
        let job = self.get(Some(tenant), id).await?;
        if !jobs::is_final(job.state) {
            return Err(Error::FailedPrecondition(format!("job {id} is still running; cancel it first")));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM job_events WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Jobs waiting in the queue (all replicas).
    pub async fn queued(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = $1 AND owner IS NULL")
            .bind(JobState::Queued as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// True for the embedded SQLite store: one replica, so at start-up every claimed job is a leftover.
    pub fn single_replica(&self) -> bool {
        self.backend == Backend::Sqlite
    }
}
