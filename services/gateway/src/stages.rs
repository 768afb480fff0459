//! Clients of the four stages, one tower stack each: a p2c-balanced [`Channel`] over every address the configured
//! host names resolve to (re-resolved periodically, so a Kubernetes headless Service's pods come and go), with the
//! caller's W3C trace context injected into every call, and a retry loop for UNAVAILABLE with exponential backoff.
//!
//! Invariants: every call carries what is left of the job's deadline as its `grpc-timeout` and never outlives it;
//! only UNAVAILABLE is retried (every stage call is idempotent: the same inputs and seed give the same outputs under
//! the same storage keys), and only while the deadline allows.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use vidmesh_runtime::TraceContextInterceptor;

use crate::Error;
use crate::config::{StageConfig, StagesConfig};
use crate::pipeline::Failure;

/// The service every stage client wraps.
pub type Svc = InterceptedService<Channel, TraceContextInterceptor>;

/// One downstream stage.
#[derive(Clone)]
pub struct Stage {
    /// Its name in logs and errors ("denoiser").
    pub name: &'static str,
    svc: Svc,
    attempts: u32,
    backoff: Duration,
}

/// The four stages.
#[derive(Clone)]
pub struct Stages {
    /// text-encoder.
    pub text_encoder: Stage,
    /// denoiser.
    pub denoiser: Stage,
    /// decoder.
    pub decoder: Stage,
    /// classifier, when configured.
    pub classifier: Option<Stage>,
}

impl Stages {
    /// Builds the four stacks; resolvers run until `shutdown`.
    pub fn connect(config: &StagesConfig, shutdown: &CancellationToken) -> Result<Self, Error> {
        Ok(Self {
            text_encoder: Stage::connect("text-encoder", &config.text_encoder, shutdown)?,
            denoiser: Stage::connect("denoiser", &config.denoiser, shutdown)?,
            decoder: Stage::connect("decoder", &config.decoder, shutdown)?,
            classifier: if config.classifier.endpoints.is_empty() {
                None
            } else {
                Some(Stage::connect("classifier", &config.classifier, shutdown)?)
            },
        })
    }
}

/// `(host, port)` of an `http://HOST:PORT` endpoint.
pub(crate) fn host_port(endpoint: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("{endpoint:?} is not a URI: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{endpoint:?} must start with http:// (in-cluster plaintext gRPC)"));
    }
    let host = uri.host().ok_or_else(|| format!("{endpoint:?} has no host"))?;
    let port = uri.port_u16().ok_or_else(|| format!("{endpoint:?} has no port"))?;
    Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), port))
}

impl Stage {
    /// A balanced client over `config.endpoints`.
    pub fn connect(name: &'static str, config: &StageConfig, shutdown: &CancellationToken) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument(format!("stages.{name}: no endpoints configured")));
        }
        let targets = config
            .endpoints
            .iter()
            .map(|e| host_port(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(format!("stages.{name}.endpoints: {e}")))?;
        let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let every = Duration::from_secs(config.resolve_secs);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut current: HashSet<SocketAddr> = HashSet::new();
            loop {
                let mut seen = HashSet::new();
                for (host, port) in &targets {
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(addrs) => seen.extend(addrs),
                        Err(e) => tracing::warn!(stage = name, %host, "resolving: {e}; keeping the last addresses"),
                    }
                }
                // A failed lookup must not empty the pool: keep what we had for hosts that did not answer.
                if seen.is_empty() {
                    seen.clone_from(&current);
                }
                for gone in current.difference(&seen) {
                    tracing::info!(stage = name, addr = %gone, "endpoint removed");
                    if changes.send(Change::Remove(*gone)).await.is_err() {
                        return;
                    }
                }
                for new in seen.difference(&current) {
                    let Ok(ep) = Endpoint::from_shared(format!("http://{new}")) else { continue };
                    let ep = ep.connect_timeout(connect_timeout).tcp_nodelay(true);
                    tracing::info!(stage = name, addr = %new, "endpoint added");
                    if changes.send(Change::Insert(*new, ep)).await.is_err() {
                        return;
                    }
                }
                current = seen;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        Ok(Self {
            name,
            svc: InterceptedService::new(channel, TraceContextInterceptor),
            attempts: config.attempts,
            backoff: Duration::from_millis(config.backoff_ms),
        })
    }

    /// The balanced, traced service to build a generated client on.
    pub fn svc(&self) -> Svc {
        self.svc.clone()
    }

    /// Calls the stage with `req`: `call(service, request)` on the balanced, traced service, the request carrying
    /// what is left of `deadline`, retried while UNAVAILABLE (see [`Stage::retry`]); a failure names the stage.
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

    /// The stage failed a call (or a stream) with `status`.
    pub fn failed(&self, status: Status) -> Failure {
        Failure::Stage { stage: self.name, status }
    }

    /// The stage's answer is unusable: `message`, with `code` for the job's failure.
    pub fn answer(&self, message: impl Into<String>, code: Code) -> Failure {
        Failure::Answer { stage: self.name, message: message.into(), code }
    }

    /// Runs `call(time_left)` until it succeeds, fails with anything but UNAVAILABLE, runs out of attempts, or
    /// `deadline` passes (DEADLINE_EXCEEDED). `call` must put `time_left` on its request (`set_timeout`).
    pub async fn retry<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Status::deadline_exceeded(format!("{}: the job's deadline passed", self.name)));
            }
            match tokio::time::timeout(left, call(left)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if s.code() == Code::Unavailable && attempt < self.attempts => {
                    tracing::warn!(stage = self.name, attempt, "unavailable ({}); retrying in {delay:?}", s.message());
                    tokio::time::sleep(delay.min(left)).await;
                    delay *= 2;
                    attempt += 1;
                }
                Ok(Err(s)) => return Err(s),
                Err(_) => return Err(Status::deadline_exceeded(format!("{}: the job's deadline passed", self.name))),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_plain_http_with_a_port() {
        assert_eq!(host_port("http://denoiser.vidmesh.svc:50052").unwrap(), ("denoiser.vidmesh.svc".into(), 50052));
        assert_eq!(host_port("http://[::1]:1").unwrap(), ("::1".into(), 1));
        assert!(host_port("https://x:1").is_err());
        assert!(host_port("http://x").is_err());
    }

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
}
