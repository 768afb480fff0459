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
