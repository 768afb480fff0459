//! W3C trace context crosses a real gRPC hop: a client call made under a known trace id through
//! `TraceContextInterceptor` is handled inside a server span of the same trace. Also: metrics over HTTP.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::pin::Pin;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health as HealthRpc, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_client::HealthClient};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use vidmesh_runtime::{GrpcServer, Health, ServerConfig, TelemetryConfig, TraceContextInterceptor, telemetry};

/// Answers SERVING only when the handler runs inside the caller's trace; otherwise reports the trace id it saw.
struct Probe;

#[tonic::async_trait]
impl HealthRpc for Probe {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let seen = telemetry::current_trace_id();
        if seen == req.get_ref().service {
            Ok(Response::new(HealthCheckResponse { status: 1 }))
        } else {
            Err(Status::failed_precondition(format!("server saw trace {seen}")))
        }
    }
    type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;
    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("probe"))
    }
}

#[tokio::test]
async fn trace_context_is_injected_and_extracted() {
    let _t = telemetry::init("trace-test", &TelemetryConfig::default(), &HashMap::new()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, _) = Health::new("probe").await;
    let server = GrpcServer::new(Routes::new(HealthServer::new(Probe)), health, &ServerConfig::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(listener, shutdown.clone()));

    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::with_interceptor(channel, TraceContextInterceptor);
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let remote = SpanContext::new(
        trace_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let span = tracing::info_span!("client");
    span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote)).unwrap();
    let resp =
        client.check(HealthCheckRequest { service: trace_id.to_string() }).instrument(span).await.unwrap().into_inner();
    assert_eq!(resp.status, 1);
    // Without the interceptor the server starts a trace of its own.
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let err = HealthClient::new(channel).check(HealthCheckRequest { service: trace_id.to_string() }).await.unwrap_err();
    assert!(err.message().starts_with("server saw trace"), "{err:?}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_are_served_over_http() {
    let registry = prometheus::Registry::new();
    let c = prometheus::IntCounter::new("vidmesh_test_total", "a test counter").unwrap();
    registry.register(Box::new(c.clone())).unwrap();
    c.inc_by(3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(vidmesh_runtime::metrics::serve(listener, registry, shutdown.clone()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("vidmesh_test_total 3"), "{body}");
    shutdown.cancel();
}
