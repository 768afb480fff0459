//! The HTTP server under the router: HTTP/1.1 and HTTP/2 (prior knowledge) on one listener through hyper-util's
//! connection builder, with the read timeouts `axum::serve` lacks, and a graceful stop on the gateway's shutdown.
//!
//! Invariants:
//! - an HTTP/1 connection that has not delivered a whole request head within `http.header_read_timeout_secs` of
//!   the server starting to wait for one is closed (no answer: there is no request to answer); a stalled body is
//!   the router's business ([`super::edge::body_deadline`]);
//! - header lines that are not `name: value` (no colon, a space or a non-token character in the name, a control
//!   character in the value) are skipped, as most servers do, so the request still reaches the router and gets its
//!   JSON answer;
//! - what hyper cannot parse never reaches the router: hyper answers it itself with a bare status line (no body)
//!   and closes the connection. That is, exactly: a request line it cannot read — a method that is not a token
//!   (`G@T`), a control character, `<`, `>` or a backtick in the target, extra words, leading whitespace, a missing or
//!   unknown version (`HTTP/9.9`, `FTP/1.1`) — 400; a `Content-Length` that is not one non-negative decimal
//!   number, or two that disagree — 400; a `Transfer-Encoding` whose last coding is not `chunked` — 400; a header
//!   line holding a NUL byte or a lone carriage return (httparse never skips those) — 400; more than 100 header
//!   lines, or a head larger than hyper's read buffer — 431; a target longer than 64 KiB — 414. These are the only
//!   4xx answers without an OpenAI error body (crates/cli/tests/hostile, category `framing`);
//! - on shutdown the listener stops accepting, every connection is asked to finish its in-flight requests and
//!   close, and [`serve`] returns when they have.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;

/// How long accepting pauses after the listener fails (out of file descriptors, say) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` with `config`'s timeouts until `shutdown` fires, then drains (module docs).
pub async fn serve(listener: TcpListener, router: Router, config: &HttpConfig, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        .ignore_invalid_headers(true);
    builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("HTTP API: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP API connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
