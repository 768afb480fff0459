//! Helpers for mapping a crate's error enum to `tonic::Status` at the edge. Clients get a code and a message a
//! person can act on; internal detail goes to the log, tagged with the trace id the client can quote.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail and a `retry-after` header (whole seconds, at least 1).
pub fn resource_exhausted(message: impl Into<String>, retry_after: Duration) -> Status {
    let mut status =
        Status::with_error_details(Code::ResourceExhausted, message, ErrorDetails::with_retry_info(Some(retry_after)));
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = secs.to_string().parse() {
        status.metadata_mut().insert("retry-after", v);
    }
    status
}

/// INTERNAL with a generic message; the real cause is logged with the trace id so an operator can find it.
pub fn internal(cause: &dyn std::fmt::Display) -> Status {
    let trace_id = crate::telemetry::current_trace_id();
    tracing::error!(%trace_id, "internal error: {cause}");
    Status::internal(format!("internal error (trace id {trace_id})"))
}

/// The retry delay carried by a status made with [`resource_exhausted`], if any.
pub fn retry_after(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

/// Why a stage refuses a call before doing any work: the same reasons, words and codes in every stage.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request names a model this server does not serve (NOT_FOUND).
    #[error("model {requested:?} is not served here (this server serves {served:?})")]
    UnknownModel {
        /// Asked for.
        requested: String,
        /// Served.
        served: String,
    },
    /// The stage is at capacity (RESOURCE_EXHAUSTED with retry info).
    #[error("{stage} is at capacity{detail}; retry later")]
    Overloaded {
        /// Which stage.
        stage: &'static str,
        /// What is full, e.g. ` (12 prompts queued)`; may be empty.
        detail: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The stage is still loading its model (UNAVAILABLE).
    #[error("still loading; retry shortly")]
    NotReady,
    /// The stage is shutting down (UNAVAILABLE: a client retries on another replica).
    #[error("server is shutting down")]
    Draining,
}

impl Refusal {
    /// `stage` is full; `retry_after` suggests when to try again.
    pub fn overloaded(stage: &'static str, retry_after: Duration) -> Self {
        Self::Overloaded { stage, detail: String::new(), retry_after }
    }

    /// Its status: NOT_FOUND, RESOURCE_EXHAUSTED (with retry info) or UNAVAILABLE.
    pub fn status(&self) -> Status {
        match self {
            Refusal::UnknownModel { .. } => Status::not_found(self.to_string()),
            Refusal::Overloaded { retry_after, .. } => resource_exhausted(self.to_string(), *retry_after),
            Refusal::NotReady | Refusal::Draining => Status::unavailable(self.to_string()),
        }
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        r.status()
    }
}
