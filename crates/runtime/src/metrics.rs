//! Prometheus metrics on their own port: `GET /metrics` in the text exposition format; with the stage's
//! [`Health`], also `GET /livez` (200 while the process serves) and `GET /readyz` (200 while the service is SERVING,
//! 503 while it loads or drains) for probes that cannot reach the gRPC port (mutual TLS); anything else 404.
//! Every service defines its collectors the same way: a `Metrics` struct in its `metrics.rs` whose `register`
//! creates each collector through [`Collectors`] (created and registered in one step), and the stage shell serves
//! the registry.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Health;

/// Creates collectors and registers them in `registry` in one step.
pub struct Collectors<'a>(pub &'a Registry);

impl Collectors<'_> {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, prometheus::Error> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help)?)
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help)?)
    }

    /// A counter with `labels`.
    pub fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    /// A histogram with `buckets` (empty: Prometheus' default buckets).
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, prometheus::Error> {
        self.add(Histogram::with_opts(histogram_opts(name, help, buckets))?)
    }

    /// A histogram with `buckets` (empty: the default ones) and `labels`.
    pub fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.add(HistogramVec::new(histogram_opts(name, help, buckets), labels)?)
    }
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    let opts = HistogramOpts::new(name, help);
    if buckets.is_empty() { opts } else { opts.buckets(buckets.to_vec()) }
}

fn render(registry: &Registry) -> Response<Full<Bytes>> {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&registry.gather(), &mut buf) {
        Ok(()) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, encoder.format_type())
            .body(Full::new(Bytes::from(buf))),
        Err(e) => {
            Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(Full::new(Bytes::from(e.to_string())))
        }
    }
    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serves `registry` on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) {
    serve_with_health(listener, registry, None, shutdown).await;
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// The answer to `path`.
fn respond(path: &str, registry: &Registry, health: Option<&Health>) -> Response<Full<Bytes>> {
    match (path, health) {
        ("/metrics", _) => render(registry),
        ("/livez", Some(_)) => text(StatusCode::OK, "ok\n"),
        ("/readyz", Some(h)) if h.is_serving() => text(StatusCode::OK, "SERVING\n"),
        ("/readyz", Some(_)) => text(StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n"),
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics\n"),
    }
}

/// Serves `registry` on `listener`, and the probes of `health` (see the module doc), until `shutdown` fires.
pub async fn serve_with_health(
    listener: TcpListener,
    registry: Registry,
    health: Option<Health>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("metrics accept: {e}");
                    continue;
                }
            },
        };
        let (registry, health) = (registry.clone(), health.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = respond(req.uri().path(), &registry, health.as_ref());
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

/// Reads one metric's value from `registry` (sum over label sets), for tests and benches.
pub fn value(registry: &Registry, name: &str) -> Option<f64> {
    let families = registry.gather();
    let family = families.iter().find(|f| f.name() == name)?;
    use prometheus::proto::MetricType;
    let kind = family.get_field_type();
    Some(
        family
            .get_metric()
            .iter()
            .map(|m| match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
                _ => 0.0,
            })
            .sum(),
    )
}
