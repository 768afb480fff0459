//! With an endpoint configured, `tracing` spans are exported over OTLP/gRPC (opentelemetry-otlp's tonic exporter)
//! to a collector endpoint started here on 127.0.0.1:0 (the OTLP TraceService from opentelemetry-proto), with the
//! service name as resource and the span's W3C trace id. Its own test binary: the subscriber is process-global.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use vidmesh_runtime::{TelemetryConfig, telemetry};

/// (service.name, span name, trace id) of one received span.
type Received = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    self.0.lock().unwrap().push((service.clone(), span.name, span.trace_id));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector() {
    let collector = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let cfg = TelemetryConfig { otlp_endpoint: format!("http://{addr}"), ..Default::default() };
    let t = telemetry::init("otlp-test", &cfg, &HashMap::new()).unwrap();
    assert_eq!(t.endpoint.as_deref(), Some(format!("http://{addr}").as_str()));
    let trace_id = {
        let span = tracing::info_span!("vidmesh-test-span");
        let _g = span.enter();
        telemetry::current_trace_id()
    };
    tokio::task::spawn_blocking(move || t.shutdown()).await.unwrap();
    let got = collector.0.lock().unwrap().clone();
    let span = got.iter().find(|(_, name, _)| name == "vidmesh-test-span").expect("span exported");
    assert!(span.0.contains("otlp-test"), "service.name resource: {}", span.0);
    let hex: String = span.2.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, trace_id);
}
