//! Clients of the four stages, one tower stack each: a p2c-balanced [`Channel`] over every address the configured
//! host names resolve to (re-resolved periodically, so a Kubernetes headless Service's pods come and go), with the
//! caller's W3C trace context injected into every call, over mutual TLS when `[stages.tls]` is set (`https://`
//! endpoints; a stage's certificate must name the host its endpoint was written with), a connection that fails
//! before the stage answers reported as UNAVAILABLE ([`Reach`]), and a retry loop with exponential backoff.
//!
//! Invariants: every call carries what is left of the job's deadline as its `grpc-timeout` and never outlives it;
//! a call is made again only when a retry may mend it ([`retryable`]: UNAVAILABLE, or the connection broke under
//! the call — a replica killed mid-stream), at most `attempts` times with a doubling, capped backoff, and only while
//! the deadline allows. Every stage call is idempotent (the same inputs and seed give the same outputs under the
//! same storage keys), so a streamed call that broke is simply made again from its start ([`Stage::stream`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use vidmesh_runtime::TraceContextInterceptor;

use crate::Error;
use crate::config::{StageConfig, StagesConfig};
use crate::pipeline::Failure;

mod retry;
pub use retry::{Resumable, retryable};

/// The service every stage client wraps.
pub type Svc = InterceptedService<Reach, TraceContextInterceptor>;

/// The balanced channel of one stage, with every failure to get an answer from it at all reported as UNAVAILABLE
/// naming the cause: tonic reports a connection that fails before the stage answers (a TLS handshake the stage
/// refused, a plaintext client at a TLS port, a stage that closed the connection) as UNKNOWN, INTERNAL or
/// CANCELLED, which would read as the stage's own error or the caller's cancellation. The stage's own statuses,
/// and errors of a response stream under way, pass unchanged.
#[derive(Clone)]
pub struct Reach {
    channel: Channel,
    /// The stage's name, for the log.
    stage: &'static str,
    /// Whether its endpoints are `https://`.
    tls: bool,
}

impl tower::Service<http::Request<tonic::body::Body>> for Reach {
    type Response = http::Response<tonic::body::Body>;
    type Error = Status;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Status>> {
        let (stage, tls) = (self.stage, self.tls);
        tower::Service::poll_ready(&mut self.channel, cx).map_err(|e| unreachable(stage, tls, e))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (stage, tls) = (self.stage, self.tls);
        let answer = tower::Service::call(&mut self.channel, req);
        Box::pin(async move { answer.await.map_err(|e| unreachable(stage, tls, e)) })
    }
}

/// The status of a call to `stage` whose connection failed with `e` (see [`Reach`]).
fn unreachable(stage: &'static str, tls: bool, e: tonic::transport::Error) -> Status {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    let status = Status::from_error(Box::new(e));
    if status.code() == Code::Unavailable {
        return status;
    }
    if !tls {
        // The most likely misconfiguration behind it: a plaintext client at a TLS port.
        tracing::warn!(
            stage,
            "the connection failed before the stage answered ({cause}); if the stage serves TLS \
            ([server.tls]), set stages.tls and write its endpoints https://"
        );
    }
    Status::unavailable(format!("the connection failed before the stage answered ({cause})"))
}

/// One downstream stage.
#[derive(Clone)]
pub struct Stage {
    /// Its name in logs and errors ("denoiser").
    pub name: &'static str,
    svc: Svc,
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    retries: Option<IntCounterVec>,
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
    /// Counts every retried stage call in `retries` (label: stage).
    pub fn count_retries(mut self, retries: &IntCounterVec) -> Self {
        for stage in [&mut self.text_encoder, &mut self.denoiser, &mut self.decoder] {
            stage.retries = Some(retries.clone());
        }
        if let Some(c) = &mut self.classifier {
            c.retries = Some(retries.clone());
        }
        self
    }

    /// Builds the four stacks, over TLS when `[stages.tls]` is set (its files are read here); resolvers run until
    /// `shutdown`.
    pub fn connect(config: &StagesConfig, shutdown: &CancellationToken) -> Result<Self, Error> {
        let tls = config.tls.load("stages.tls.").map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let tls = tls.as_ref();
        Ok(Self {
            text_encoder: Stage::connect_with("text-encoder", &config.text_encoder, tls, shutdown)?,
            denoiser: Stage::connect_with("denoiser", &config.denoiser, tls, shutdown)?,
            decoder: Stage::connect_with("decoder", &config.decoder, tls, shutdown)?,
            classifier: if config.classifier.endpoints.is_empty() {
                None
            } else {
                Some(Stage::connect_with("classifier", &config.classifier, tls, shutdown)?)
            },
        })
    }
}

/// A stage endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `https://`: TLS with `[stages.tls]`, the host name being the name the stage's certificate must carry.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The target of an `http://HOST:PORT` (plaintext) or `https://HOST:PORT` (TLS) endpoint.
pub(crate) fn host_port(endpoint: &str) -> Result<Target, String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("{endpoint:?} is not a URI: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{endpoint:?} must start with http:// (plaintext) or https:// (TLS)")),
    };
    let host = uri.host().ok_or_else(|| format!("{endpoint:?} has no host"))?;
    let port = uri.port_u16().ok_or_else(|| format!("{endpoint:?} has no port"))?;
    Ok(Target { tls, host: host.trim_matches(|c| c == '[' || c == ']').to_string(), port })
}

/// Why `endpoint` (whose scheme says `tls`) does not agree with `[stages.tls]`: TLS is on for every stage or for
/// none, so a plaintext endpoint never hides among TLS ones.
pub(crate) fn scheme_mismatch(endpoint: &str, tls: bool) -> String {
    if tls {
        format!(
            "{endpoint:?} is https:// but stages.tls.ca_file is not set (the CA that signed the stages' certificates)"
        )
    } else {
        format!("{endpoint:?} is http:// while stages.tls is set; write https:// to reach the stage over TLS")
    }
}

/// The tonic endpoint of one resolved address of `host`: plaintext, or TLS checking that the stage's certificate
/// names `host` (the address itself is an IP the resolver found).
fn endpoint(addr: SocketAddr, host: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        None => Endpoint::from_shared(format!("http://{addr}")),
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone().domain_name(host)),
    }
}

impl Stage {
    /// A balanced client over `config.endpoints`, which must be plaintext (`http://`).
    pub fn connect(name: &'static str, config: &StageConfig, shutdown: &CancellationToken) -> Result<Self, Error> {
        Self::connect_with(name, config, None, shutdown)
    }

    /// A balanced client over `config.endpoints`: `https://` ones over TLS with `tls` (which must then be given),
    /// `http://` ones in plaintext (only while `tls` is not).
    pub fn connect_with(
        name: &'static str,
        config: &StageConfig,
        tls: Option<&ClientTlsConfig>,
        shutdown: &CancellationToken,
    ) -> Result<Self, Error> {
        let key = name.replace('-', "_");
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument(format!("stages.{key}: no endpoints configured")));
        }
        let targets = config
            .endpoints
            .iter()
            .map(|e| match host_port(e) {
                Ok(t) if t.tls != tls.is_some() => Err(scheme_mismatch(e, t.tls)),
                parsed => parsed,
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument(format!("stages.{key}.endpoints: {e}")))?;
        let (tls, secure) = (tls.cloned(), tls.is_some());
        let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let every = Duration::from_secs(config.resolve_secs);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut current: HashSet<SocketAddr> = HashSet::new();
            // The configured host name each address was found under: the name its certificate must carry.
            let mut hosts: HashMap<SocketAddr, String> = HashMap::new();
            loop {
                let mut seen = HashSet::new();
                for Target { host, port, .. } in &targets {
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(addrs) => {
                            for addr in addrs {
                                seen.insert(addr);
                                hosts.insert(addr, host.clone());
                            }
                        }
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
                    let host = hosts.get(new).map_or("", String::as_str);
                    let ep = match endpoint(*new, host, tls.as_ref()) {
                        Ok(ep) => ep.connect_timeout(connect_timeout).tcp_nodelay(true),
                        Err(e) => {
                            tracing::warn!(stage = name, addr = %new, "endpoint not usable: {e}");
                            continue;
                        }
                    };
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
            svc: InterceptedService::new(Reach { channel, stage: name, tls: secure }, TraceContextInterceptor),
            attempts: config.attempts,
            backoff: Duration::from_millis(config.backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            retries: None,
        })
    }

    /// The balanced, traced service to build a generated client on.
    pub fn svc(&self) -> Svc {
        self.svc.clone()
    }

    /// The stage failed a call (or a stream) with `status`.
    pub fn failed(&self, status: Status) -> Failure {
        Failure::Stage { stage: self.name, status }
    }

    /// The stage's answer is unusable: `message`, with `code` for the job's failure.
    pub fn answer(&self, message: impl Into<String>, code: Code) -> Failure {
        Failure::Answer { stage: self.name, message: message.into(), code }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_or_https_with_a_port() {
        let target = |tls, host: &str, port| Target { tls, host: host.into(), port };
        assert_eq!(
            host_port("http://denoiser.vidmesh.svc:50052").unwrap(),
            target(false, "denoiser.vidmesh.svc", 50052)
        );
        assert_eq!(host_port("http://[::1]:1").unwrap(), target(false, "::1", 1));
        assert_eq!(host_port("https://denoiser:50051").unwrap(), target(true, "denoiser", 50051));
        assert!(host_port("grpc://x:1").is_err());
        assert!(host_port("http://x").is_err());
    }

    #[tokio::test]
    async fn the_scheme_must_agree_with_the_tls_settings() {
        let stop = CancellationToken::new();
        let https = StageConfig { endpoints: vec!["https://127.0.0.1:9".into()], ..Default::default() };
        let Err(err) = Stage::connect("text-encoder", &https, &stop) else { panic!("https without TLS settings") };
        assert!(
            err.to_string().starts_with("stages.text_encoder.endpoints: \"https://127.0.0.1:9\" is https://"),
            "{err}"
        );
        let http = StageConfig { endpoints: vec!["http://127.0.0.1:9".into()], ..Default::default() };
        let tls = ClientTlsConfig::new();
        let Err(err) = Stage::connect_with("denoiser", &http, Some(&tls), &stop) else { panic!("http with TLS") };
        assert!(err.to_string().contains("is http:// while stages.tls is set"), "{err}");
        assert!(Stage::connect_with("denoiser", &https, Some(&tls), &stop).is_ok());
        stop.cancel();
    }
}
