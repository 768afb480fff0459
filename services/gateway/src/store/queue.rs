//! The queue: claiming the next job (priority, then age; `FOR UPDATE SKIP LOCKED` on PostgreSQL), lease renewal,
//! and handing back the jobs of replicas that stopped or died.

use std::time::Duration;

use sqlx::Row as _;
use vidmesh_proto::gateway::v1::{JobState, Queued, Stage, job_event::Event};

use super::{Backend, Claimed, Lease, Notice, Release, Store, decode_job, now_us};
use crate::Error;

impl Store {
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

    /// Jobs waiting in the queue (all replicas).
    pub async fn queued(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = $1 AND owner IS NULL")
            .bind(JobState::Queued as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Tells every waiting job whose place in the queue changed its new position (a `queued` event). Called after
    /// a claim; positions count over all replicas.
    pub async fn announce_positions(&self) -> Result<(), Error> {
        let rows = sqlx::query(
            "SELECT id, position FROM jobs WHERE state = $1 AND owner IS NULL AND cancel_requested = 0 \
             ORDER BY priority DESC, id ASC",
        )
        .bind(JobState::Queued as i64)
        .fetch_all(&self.pool)
        .await?;
        for (i, row) in rows.iter().enumerate() {
            let position = i as u32 + 1;
            if row.try_get::<i64, _>(1)? != i64::from(position) {
                let id: String = row.try_get(0)?;
                self.announce_position(&id, position).await?;
            }
        }
        Ok(())
    }
}
