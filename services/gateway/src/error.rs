//! The gateway's one error enum, mapped once to a gRPC status ([`From<Error> for Status`]) and once to an HTTP
//! status with an OpenAI-style error body ([`Error::http`]). Messages say what to do; internal causes are logged
//! with the trace id and never sent.

use std::time::Duration;

use tonic::Status;

/// What a caller is told when no job-store connection came free in time (store.max_connections all busy).
const STORE_BUSY: &str = "the job store is busy (every connection in use); retry later";

/// Everything that can go wrong answering a caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something the model cannot do.
    #[error("{0}")]
    InvalidArgument(String),
    /// The prompt falls in a refused policy category.
    #[error("the prompt was refused by policy ({category}): {reason}")]
    PolicyRefused {
        /// The category.
        category: String,
        /// Why, in the operator's words.
        reason: String,
    },
    /// No API key, or an unknown one.
    #[error("{0}")]
    Unauthenticated(String),
    /// No such job (or not the caller's), or no such file of a job: the whole message.
    #[error("{0}")]
    NotFound(String),
    /// The job is in a state that does not allow this (e.g. content of an unfinished job).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota, a rate limit or the queue is full.
    #[error("{message}")]
    Exhausted {
        /// What is full.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The gateway is shutting down or a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// The job store failed.
    #[error("job store: {0}")]
    Store(#[from] sqlx::Error),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] vidmesh_storage::StorageError),
    /// Anything else unexpected.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// No job `id` the caller may see (another tenant's job reads exactly as one that does not exist).
    pub fn no_job(id: &str) -> Self {
        Error::NotFound(format!("no job {}", crate::jobs::quoted_id(id)))
    }

    /// HTTP status, OpenAI error type and code, and the message a caller may see.
    pub fn http(&self) -> (http::StatusCode, &'static str, &'static str, String) {
        use http::StatusCode as S;
        match self {
            Error::InvalidArgument(_) => (S::BAD_REQUEST, "invalid_request_error", "invalid_value", self.to_string()),
            Error::PolicyRefused { .. } => {
                (S::BAD_REQUEST, "invalid_request_error", "content_policy_violation", self.to_string())
            }
            Error::Unauthenticated(_) => {
                (S::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", self.to_string())
            }
            Error::NotFound(_) => (S::NOT_FOUND, "invalid_request_error", "not_found", self.to_string()),
            Error::FailedPrecondition(_) => (S::CONFLICT, "invalid_request_error", "invalid_state", self.to_string()),
            Error::Exhausted { .. } => {
                (S::TOO_MANY_REQUESTS, "rate_limit_exceeded", "rate_limit_exceeded", self.to_string())
            }
            Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "server_error", "unavailable", self.to_string()),
            Error::Store(sqlx::Error::PoolTimedOut) => {
                (S::SERVICE_UNAVAILABLE, "server_error", "unavailable", STORE_BUSY.to_string())
            }
            Error::Store(_) | Error::Storage(_) | Error::Internal(_) => {
                let trace_id = vidmesh_runtime::telemetry::current_trace_id();
                tracing::error!(%trace_id, "internal error: {self}");
                (
                    S::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "internal_error",
                    format!("internal error (trace id {trace_id})"),
                )
            }
        }
    }

    /// The retry-after to send, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Exhausted { retry_after, .. } => Some(*retry_after),
            Error::Unavailable(_) | Error::Store(sqlx::Error::PoolTimedOut) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidArgument(_) | Error::PolicyRefused { .. } => Status::invalid_argument(e.to_string()),
            Error::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::Exhausted { retry_after, .. } => {
                vidmesh_runtime::status::resource_exhausted(e.to_string(), *retry_after)
            }
            Error::Unavailable(_) => Status::unavailable(e.to_string()),
            Error::Store(sqlx::Error::PoolTimedOut) => Status::unavailable(STORE_BUSY),
            Error::Store(_) | Error::Storage(_) | Error::Internal(_) => vidmesh_runtime::status::internal(&e),
        }
    }
}
