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
use vidmesh_proto::gateway::v1::{Job, JobEvent};

use crate::Error;
use crate::config::StoreConfig;

mod queue;
mod write;

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
    /// SQLite: an exclusive lock on `<db>.lock`, held while any clone lives (one replica per file).
    _owner_lock: Option<std::sync::Arc<std::fs::File>>,
}

/// Takes the exclusive lock that makes this process the SQLite store's only replica, waiting up to `wait` for a
/// previous owner to let go (the OS releases it when a process dies, kill -9 included).
async fn lock_sqlite(url: &str, wait: Duration) -> Result<Option<std::sync::Arc<std::fs::File>>, Error> {
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(None); // in-memory: nothing to share
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::InvalidArgument(format!("store.url: cannot open {lock_path}: {e}")))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(std::sync::Arc::new(file))),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Unavailable(format!(
                    "another gateway process uses the SQLite job store {path}; a SQLite store has one replica \
                     (several replicas share a PostgreSQL store: store.url = \"postgres://…\")"
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::InvalidArgument(format!("store.url: cannot lock {lock_path}: {e}")));
            }
        }
    }
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
        position BIGINT NOT NULL DEFAULT 0,
        job BLOB NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key)",
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority, id)",
    "CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, id)",
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_us)",
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
            (Backend::Postgres, config.url.clone(), config.max_connections)
        } else {
            return Err(Error::InvalidArgument(format!(
                "store.url must start with sqlite:// or postgres://, not {:?}",
                config.url.split(':').next().unwrap_or("")
            )));
        };
        let owner_lock = match backend {
            Backend::Sqlite => lock_sqlite(&config.url, Duration::from_millis(config.lock_wait_ms)).await?,
            Backend::Postgres => None,
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
        Ok(Self { pool, backend, notices, _owner_lock: owner_lock })
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

    /// The tenant's job `id` (`tenant` None = any tenant).
    pub async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Job, Error> {
        let row = sqlx::query("SELECT job, tenant FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        match row {
            Some(row) if tenant.is_none_or(|t| row.try_get::<String, _>(1).is_ok_and(|owner| owner == t)) => {
                decode_job(&row.try_get::<Vec<u8>, _>(0)?)
            }
            _ => Err(Error::no_job(id)),
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

    /// True for the embedded SQLite store: one replica, so at start-up every claimed job is a leftover.
    pub fn single_replica(&self) -> bool {
        self.backend == Backend::Sqlite
    }
}
