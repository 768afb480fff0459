//! Logging and tracing: a `tracing` subscriber (text or JSON), an OpenTelemetry layer that always assigns W3C trace
//! ids (so context propagates across hops even when nothing is exported), and an OTLP/gRPC span exporter when an
//! endpoint is configured.
//!
//! Invariants: every gRPC server span is parented on the caller's `traceparent` (see [`server_span`]); every
//! client call made through [`TraceContextInterceptor`] carries the current span's context. The global subscriber
//! is installed once per process; later `init` calls (tests) keep the first one.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::TelemetryConfig;

/// Failure to set up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("telemetry.log_filter {0:?} is not a valid filter: {1}")]
    Filter(String, String),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter for {0}: {1}")]
    Exporter(String, String),
}

/// The standard OpenTelemetry environment variables that apply when the config leaves them unset (a flat struct,
/// read with envy).
#[derive(Debug, Default, Deserialize)]
struct OtelEnv {
    otel_exporter_otlp_endpoint: Option<String>,
    otel_service_name: Option<String>,
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes pending spans.
pub struct Telemetry {
    provider: SdkTracerProvider,
    /// The OTLP endpoint spans are exported to, if any.
    pub endpoint: Option<String>,
}

impl Telemetry {
    /// Flushes and stops span export. Call once at the end of `main`.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {e}");
        }
    }
}

/// Installs logging and tracing for `service`. `env` supplies `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_SERVICE_NAME`
/// when the config has no endpoint (usually `std::env::vars().collect()`).
pub fn init(service: &str, cfg: &TelemetryConfig, env: &HashMap<String, String>) -> Result<Telemetry, TelemetryError> {
    let otel_env: OtelEnv = envy::from_iter(env.iter().map(|(k, v)| (k.clone(), v.clone()))).unwrap_or_default();
    let endpoint = Some(cfg.otlp_endpoint.clone())
        .filter(|e| !e.is_empty())
        .or(otel_env.otel_exporter_otlp_endpoint.filter(|e| !e.is_empty()));
    let service_name = otel_env.otel_service_name.unwrap_or_else(|| service.to_string());

    let ratio = cfg.sample_ratio.clamp(0.0, 1.0);
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service_name.clone()).build());
    if let Some(ep) = &endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(ep.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(ep.clone(), e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = EnvFilter::try_new(&cfg.log_filter)
        .map_err(|e| TelemetryError::Filter(cfg.log_filter.clone(), e.to_string()))?;
    let fmt = if cfg.log_json {
        tracing_subscriber::fmt::layer().json().with_current_span(true).boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    Ok(Telemetry { provider, endpoint })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), tonic::metadata::MetadataValue::try_from(&value))
        {
            self.0.insert(k, v);
        }
    }
}

/// The span of one inbound gRPC call, parented on the caller's W3C `traceparent` header when present.
/// Used as tonic's `trace_fn` by [`crate::GrpcServer`].
pub fn server_span(req: &http::Request<()>) -> Span {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
    let span = tracing::info_span!("grpc.server", otel.name = %req.uri().path(), otel.kind = "server");
    let _ = span.set_parent(parent);
    span
}

/// The span of one inbound HTTP request (`METHOD /path`), parented on the caller's W3C `traceparent` header when
/// present — for HTTP fronts, as [`server_span`] is for gRPC.
pub fn http_server_span(method: &http::Method, path: &str, headers: &http::HeaderMap) -> Span {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let span = tracing::info_span!("http.server", otel.name = %format!("{method} {path}"), otel.kind = "server");
    let _ = span.set_parent(parent);
    span
}

/// Writes the current span's trace context into outgoing request metadata (`traceparent`, `tracestate`).
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(metadata)));
}

/// The W3C trace id of the current span, as 32 hex digits (all zeros when there is none).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt as _;
    Span::current().context().span().span_context().trace_id().to_string()
}

/// A tonic client interceptor that injects the current trace context into every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        inject(req.metadata_mut());
        Ok(req)
    }
}

/// The current span's W3C `traceparent` (empty when there is none), for work that outlives the call (a queued
/// job) and must continue its trace later.
pub fn traceparent() -> String {
    let mut carrier = HashMap::new();
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent").unwrap_or_default()
}

/// Parents `span` on a `traceparent` saved by [`traceparent`] (nothing happens when it is empty or malformed).
pub fn continue_trace(span: &Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}
