//! Retrying stage calls: a call (or a server stream, [`Resumable`]) is made again when a retry may mend its
//! failure ([`retryable`]), with a doubling backoff capped at the stage's `max_backoff_ms`, at most `attempts`
//! times and never past the job's deadline ([`Backoff`]).
//!
//! Invariant: a status the stage itself sent is never retried (the stage refused the request, and would again); a
//! failure of the transport under the call is, and a broken stream is opened again from its start — every stage
//! call is idempotent and deterministic, so the re-run sends the same messages again.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::codec::Streaming;
use tonic::{Code, Request, Response, Status};

use super::{Stage, Svc};
use crate::pipeline::Failure;

impl Stage {
    /// Calls the stage with `req`: `call(service, request)` on the balanced, traced service, the request carrying
    /// what is left of `deadline`, retried while [`retryable`] (see [`Stage::retry`]); a failure names the stage.
    pub async fn call<Q, T, F, Fut>(&self, deadline: Instant, req: &Q, call: F) -> Result<T, Failure>
    where
        Q: Clone,
        F: Fn(Svc, Request<Q>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let attempt = |left: Duration| {
            let mut r = Request::new(req.clone());
            r.set_timeout(left);
            call(self.svc(), r)
        };
        self.retry(deadline, attempt).await.map(Response::into_inner).map_err(|s| self.failed(s))
    }

    /// A server stream opened with `req` (as [`Stage::call`]) that mends itself: see [`Resumable`].
    pub fn stream<'a, Q, M, F, Fut>(&'a self, deadline: Instant, req: &'a Q, open: F) -> Resumable<'a, Q, M, F>
    where
        Q: Clone,
        F: Fn(Svc, Request<Q>) -> Fut,
        Fut: Future<Output = Result<Response<Streaming<M>>, Status>>,
    {
        Resumable { stage: self, req, open, backoff: Backoff::new(self, deadline), stream: None }
    }

    /// Runs `call(time_left)` until it succeeds, fails in a way a retry cannot mend (see [`retryable`]), runs out
    /// of attempts, or `deadline` passes (DEADLINE_EXCEEDED). `call` must put `time_left` on its request
    /// (`set_timeout`).
    pub async fn retry<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut backoff = Backoff::new(self, deadline);
        loop {
            let left = backoff.left()?;
            match tokio::time::timeout(left, call(left)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) => backoff.failed(s).await?,
                Err(_) => return Err(backoff.deadline_passed(None)),
            }
        }
    }
}

/// A stage's server stream that is opened again from its start when it breaks in a way a retry may mend
/// ([`retryable`]: the replica died or went away mid-stream), on whichever replica is up, within the stage's attempts
/// and the job's deadline. Each message comes with its attempt number: a reader starts over whatever it assembles
/// when the number changes (every stage call is deterministic, so the re-run sends the same messages again).
pub struct Resumable<'a, Q, M, F> {
    stage: &'a Stage,
    req: &'a Q,
    open: F,
    backoff: Backoff<'a>,
    stream: Option<Streaming<M>>,
}

impl<Q, M, F, Fut> Resumable<'_, Q, M, F>
where
    Q: Clone,
    F: Fn(Svc, Request<Q>) -> Fut,
    Fut: Future<Output = Result<Response<Streaming<M>>, Status>>,
{
    /// The next message and its attempt number; `None` when the stream ended; an error (naming the stage) when it
    /// failed in a way a retry cannot mend, ran out of attempts, or outlived the deadline.
    pub async fn next(&mut self) -> Result<Option<(u32, M)>, Failure> {
        loop {
            let left = self.backoff.left().map_err(|s| self.stage.failed(s))?;
            let (stream, open, req, stage) = (&mut self.stream, &self.open, self.req, self.stage);
            let message = async {
                if stream.is_none() {
                    let mut r = Request::new(req.clone());
                    r.set_timeout(left);
                    *stream = Some(open(stage.svc(), r).await?.into_inner());
                }
                match stream {
                    Some(s) => s.message().await,
                    None => Ok(None),
                }
            };
            match tokio::time::timeout(left, message).await {
                Ok(Ok(m)) => return Ok(m.map(|m| (self.backoff.attempt, m))),
                Ok(Err(status)) => {
                    self.stream = None;
                    self.backoff.failed(status).await.map_err(|s| self.stage.failed(s))?;
                }
                Err(_) => return Err(self.stage.failed(self.backoff.deadline_passed(None))),
            }
        }
    }
}

/// Whether a failed stage call may succeed when made again: UNAVAILABLE (no replica reachable, connection
/// refused, a draining replica's GOAWAY), or the connection breaking under the call — a replica killed mid-call,
/// which tonic reports as UNKNOWN, INTERNAL or CANCELLED with the transport's error (h2, hyper, I/O) as the
/// status's source. A status the stage itself sent has no source and is never retried: the stage refused the
/// request, and would again.
pub fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Internal | Code::Cancelled => {
            let mut source = std::error::Error::source(status);
            while let Some(e) = source {
                if e.is::<h2::Error>()
                    || e.is::<hyper::Error>()
                    || e.is::<std::io::Error>()
                    || e.is::<tonic::transport::Error>()
                {
                    return true;
                }
                source = e.source();
            }
            false
        }
        _ => false,
    }
}

/// The retry state of one stage call: attempts made, the next delay (doubling up to the stage's cap) and the
/// job's deadline.
struct Backoff<'a> {
    stage: &'a Stage,
    deadline: Instant,
    attempt: u32,
    delay: Duration,
    last: Option<Status>,
}

impl<'a> Backoff<'a> {
    fn new(stage: &'a Stage, deadline: Instant) -> Self {
        Self { stage, deadline, attempt: 1, delay: stage.backoff, last: None }
    }

    /// What is left of the deadline, or DEADLINE_EXCEEDED when nothing is.
    fn left(&mut self) -> Result<Duration, Status> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let last = self.last.take();
            return Err(self.deadline_passed(last));
        }
        Ok(left)
    }

    /// DEADLINE_EXCEEDED, naming the last failure that was being retried, if any.
    fn deadline_passed(&self, last: Option<Status>) -> Status {
        match last {
            Some(s) => Status::deadline_exceeded(format!(
                "the job's deadline passed while retrying after {} attempt(s); last: {}",
                self.attempt,
                s.message()
            )),
            None => Status::deadline_exceeded("the job's deadline passed"),
        }
    }

    /// An attempt failed with `status`: waits out the backoff when another attempt may mend it, else gives the
    /// status back.
    async fn failed(&mut self, status: Status) -> Result<(), Status> {
        if !retryable(&status) || self.attempt >= self.stage.attempts {
            return Err(status);
        }
        let stage = self.stage;
        tracing::warn!(
            stage = stage.name,
            attempt = self.attempt,
            code = ?status.code(),
            "call failed ({}); retrying in {:?}",
            status.message(),
            self.delay
        );
        if let Some(r) = &stage.retries {
            r.with_label_values(&[stage.name]).inc();
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.delay.min(left)).await;
        self.delay = (self.delay * 2).min(stage.max_backoff);
        self.attempt += 1;
        self.last = Some(status);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::StageConfig;
    use tokio_util::sync::CancellationToken;
    use tonic::transport::Endpoint;

    #[tokio::test]
    async fn unavailable_is_retried_with_backoff_and_other_errors_are_not() {
        let stop = CancellationToken::new();
        let cfg = StageConfig { endpoints: vec!["http://127.0.0.1:9".into()], backoff_ms: 1, ..Default::default() };
        let stage = Stage::connect("test", &cfg, &stop).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut calls = 0;
        let r: Result<(), _> = stage
            .retry(deadline, |_| {
                calls += 1;
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!((r.unwrap_err().code(), calls), (Code::Unavailable, cfg.attempts));
        let mut calls = 0;
        let r: Result<(), _> = stage
            .retry(deadline, |_| {
                calls += 1;
                async { Err(Status::invalid_argument("no")) }
            })
            .await;
        assert_eq!((r.unwrap_err().code(), calls), (Code::InvalidArgument, 1));
        let mut calls = 0;
        let r = stage
            .retry(deadline, |_| {
                calls += 1;
                let ok = calls == 3;
                async move { if ok { Ok(7) } else { Err(Status::unavailable("down")) } }
            })
            .await;
        assert_eq!((r.unwrap(), calls), (7, 3));
        let past = Instant::now();
        let r: Result<(), _> = stage.retry(past, |_| async { Ok(()) }).await;
        assert_eq!(r.unwrap_err().code(), Code::DeadlineExceeded);
        stop.cancel();
    }

    /// A stream whose connection dies under it (the peer's process gone: here a proxy between the two drops both
    /// sockets) fails with a status a retry may mend; statuses a server sends are judged by their code alone.
    #[tokio::test]
    async fn a_stream_broken_by_the_peer_dying_is_retryable_and_a_refusal_is_not() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
            .await;
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(server);
        tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming(incoming));
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = proxy.local_addr().unwrap();
        let relay = tokio::spawn(async move {
            let (mut client, _) = proxy.accept().await.unwrap();
            let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        let channel = Endpoint::from_shared(format!("http://{front}")).unwrap().connect().await.unwrap();
        let mut health = HealthClient::new(channel);
        let service = "grpc.health.v1.Health".to_string();
        let mut watch = health.watch(HealthCheckRequest { service }).await.unwrap().into_inner();
        assert!(watch.message().await.unwrap().is_some(), "the first status arrives");
        relay.abort();
        let broken = watch.message().await.unwrap_err();
        assert!(retryable(&broken), "{broken:?}");
        assert!(retryable(&Status::unavailable("no replica")));
        for sent in [Status::internal("a bug"), Status::unknown("?"), Status::invalid_argument("no")] {
            assert!(!retryable(&sent), "{sent:?}");
        }
    }
}
