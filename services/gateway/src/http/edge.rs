//! What every HTTP request meets around its handler, so that a client gets an answer it can act on whatever it
//! sends: a route that does not exist, a method a route does not take, a path or query the extractors cannot
//! parse, a body that is too large or stalls.
//!
//! Invariants:
//! - every 4xx and 5xx response leaving the router carries OpenAI's error body (`{"error": {"message", "type",
//!   "code", "param"}}`) with a non-empty message; [`json_errors`] rewrites any other error body (axum's plain-text
//!   rejections, the empty 405) keeping the status and headers (`Allow`, `Retry-After`);
//! - a request body that stalls for `http.body_read_timeout_secs` ends the request with 408 and closes an HTTP/1
//!   connection ([`body_deadline`]), whatever the handler was doing with the body;
//! - a declared body over `http.max_body_bytes` is refused before a handler buffers it ([`refuse_oversized`]).
//!
//! Requests the HTTP server cannot parse never reach the router; see [`super::serve`] for what they get.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body::{Frame, SizeHint};
use serde_json::json;

use super::ApiError;
use crate::Error;

/// Bodies up to this size are read and discarded before an oversized request is refused.
const DRAIN_CAP: u64 = 64 << 20;

/// Longest error body [`json_errors`] reads to use as the message (axum's rejections are a line or two).
const MESSAGE_CAP: usize = 16 << 10;

/// Longest piece of a path echoed in a message.
const PATH_ECHO: usize = 200;

/// The routes, as a 404 lists them.
const ROUTES: &str = "POST/GET /v1/videos, GET/DELETE /v1/videos/{id}, GET /v1/videos/{id}/content, GET \
                      /v1/videos/{id}/events, POST /v1/videos/{id}/remix, POST /v1/videos/edits, POST \
                      /v1/videos/extensions, GET /v1/models";

/// An OpenAI error response: `status`, the error `type` and `code` OpenAI's SDKs read, and `message`.
pub(super) fn openai_error(status: StatusCode, code: &str, message: String) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = json!({"error": {"message": message, "type": kind, "code": code, "param": null}});
    (status, Json(body)).into_response()
}

/// The error code of a status no handler chose a code for.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_value",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    }
}

/// `path`, cut to [`PATH_ECHO`] characters.
fn echo(path: &str) -> String {
    match path.char_indices().nth(PATH_ECHO) {
        Some((i, _)) => format!("{}…", &path[..i]),
        None => path.to_string(),
    }
}

/// The router's fallback: 404 naming the routes there are.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    let msg = format!("no route {method} {}; the API serves {ROUTES} (docs/api.md)", echo(uri.path()));
    openai_error(StatusCode::NOT_FOUND, "not_found", msg)
}

/// Gives every error response without a JSON body one (see the module invariants): the body's text, or for an
/// empty 405 the methods the path takes, becomes the message.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), echo(req.uri().path()));
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_CAP).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match (status, parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok())) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) if text.is_empty() => {
            format!("{path} does not take {method}; it takes {}", allow.replace(',', ", "))
        }
        _ if text.is_empty() => format!("{method} {path}: {}", status.canonical_reason().unwrap_or("refused")),
        _ => text,
    };
    let fresh = openai_error(status, code_of(status), message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, fresh.into_body())
}

/// Refuses a request whose declared body is larger than `max` with 400, after reading and discarding the body (up
/// to [`DRAIN_CAP`]) so the client finishes sending and reads the answer rather than a reset connection. Bodies
/// without a declared length meet the same limit in the extractors.
pub(super) async fn refuse_oversized(max: usize, req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => {
            if n <= DRAIN_CAP {
                let mut body = req.into_body().into_data_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
            let msg = format!("body: {n} bytes is larger than the limit of {max} bytes (http.max_body_bytes)");
            ApiError(Error::InvalidArgument(msg)).into_response()
        }
        _ => next.run(req).await,
    }
}

/// Ends a request whose body stalls for `idle` with 408 (see the module invariants). The body is watched while
/// someone reads it; the clock starts at the first read, so time a handler spends before reading does not count.
pub(super) async fn body_deadline(idle: Duration, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let http1 = req.version() <= Version::HTTP_11;
    let req = req.map(|inner| Body::new(Watched { inner, idle, sleep: None, expired: expired.clone(), done: false }));
    let resp = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return resp;
    }
    let msg = format!(
        "the request body stalled: nothing arrived for {} s (http.body_read_timeout_secs); send the whole body \
         promptly, with a Content-Length that matches it",
        idle.as_secs()
    );
    let mut resp = openai_error(StatusCode::REQUEST_TIMEOUT, "request_timeout", msg);
    if http1 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The body stalled (the error a handler reading it sees).
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body arrived for {0:?} (http.body_read_timeout_secs)")]
struct Stalled(Duration);

/// A request body that fails with [`Stalled`] when no frame arrives for `idle`, and says so in `expired`.
struct Watched {
    inner: Body,
    idle: Duration,
    /// Set at the first read; pushed back at each frame.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
    done: bool,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let idle = this.idle;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                sleep.as_mut().reset(tokio::time::Instant::now() + idle);
                Poll::Ready(frame)
            }
            Poll::Pending if sleep.as_mut().poll(cx).is_ready() => {
                this.done = true;
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(Stalled(idle)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
