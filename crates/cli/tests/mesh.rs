//! End to end with the five services as separate processes on loopback (`vidmesh serve <service>`):
//! - a prompt becomes an MP4 that ffprobe accepts and the classifier recognises, with monotonic, complete progress,
//!   and one trace id spans all five services (an OTLP collector runs in the test); SIGTERM drains every process
//!   within its grace period;
//! - two gateway processes on PostgreSQL: submit on one, watch and cancel on the other, the denoiser let go.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PgDb, Proc, Stages};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, JobEvent, JobState, WatchJobRequest, job_event::Event,
};

/// trace id (hex) → service names that exported spans in it.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<HashMap<String, HashSet<String>>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                self.0.lock().unwrap().entry(id).or_default().insert(service.clone());
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn collector() -> (Collector, std::net::SocketAddr) {
    let c = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(c.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (c, addr)
}

async fn client(gw: &Proc) -> GatewayClient<Channel> {
    GatewayClient::connect(format!("http://{}", gw.grpc)).await.unwrap()
}

async fn collect(mut s: tonic::Streaming<JobEvent>) -> Vec<JobEvent> {
    let mut out = Vec::new();
    while let Some(ev) = s.message().await.unwrap() {
        out.push(ev);
    }
    out
}

fn request(prompt: &str, steps: u32) -> GenerateRequest {
    GenerateRequest { prompt: prompt.into(), num_inference_steps: steps, seed: Some(5), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_make_a_recognised_video_in_one_trace_and_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (spans, otlp) = collector().await;
    let stages = Stages::start(dir.path(), &root, Some(otlp)).await;
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let gw = Proc::start("gateway", dir.path(), &stages.gateway_toml(&root, &store, Some(otlp), 10)).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = tonic::Request::new(request("a small red circle moving left slowly on a black background", 8));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    let events = collect(client(&gw).await.generate(req).await.unwrap().into_inner()).await;
    for (i, w) in events.windows(2).enumerate() {
        assert_eq!(w[1].sequence, w[0].sequence + 1, "event {i}");
        assert!(w[1].progress >= w[0].progress, "progress went down at event {i}");
    }
    let steps: Vec<u32> = events
        .iter()
        .filter_map(|e| if let Some(Event::Denoising(d)) = &e.event { Some(d.step) } else { None })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>(), "every step reported once");
    let Some(Event::Completed(result)) = events.last().unwrap().event.clone() else {
        panic!("not completed: {:?}", events.last())
    };
    assert_eq!(result.detection_verdict, "generated", "{:?}", result.detection_reasons);
    let mp4 = result.video.unwrap().uri.strip_prefix("file://").unwrap().to_string();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames"])
        .args(["-of", "csv=p=0", &mp4])
        .output()
        .expect("ffprobe (Debian's ffmpeg) is installed by test.sh");
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "h264,64,64,16");

    // A job submitted over HTTP continues the caller's trace too.
    let http_trace = "0af7651916cd43dd8448eb211c80319c";
    let created = reqwest::Client::new()
        .post(format!("http://{}/v1/videos", gw.http.unwrap()))
        .header("traceparent", format!("00-{http_trace}-b7ad6b7169203331-01"))
        .header("content-type", "application/json")
        .body(r#"{"prompt": "a blue square moving up", "num_inference_steps": 3}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_string();
    let events =
        collect(client(&gw).await.watch(WatchJobRequest { id, after_sequence: 0 }).await.unwrap().into_inner()).await;
    assert!(matches!(events.last().unwrap().event, Some(Event::Completed(_))), "{created}");

    // SIGTERM: every process drains and exits cleanly (their exporters flush on the way out).
    assert!(gw.terminate(), "gateway exit status");
    for p in stages.0 {
        let name = p.name.clone();
        assert!(p.terminate(), "{name} exit status");
    }
    for trace in [trace_id, http_trace] {
        let services = spans.0.lock().unwrap().get(trace).cloned().unwrap_or_default();
        for s in
            ["vidmesh-gateway", "vidmesh-text-encoder", "vidmesh-denoiser", "vidmesh-decoder", "vidmesh-classifier"]
        {
            assert!(services.contains(s), "no span of {s} in trace {trace}: {services:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_postgres_submit_on_one_watch_and_cancel_on_the_other() {
    let db = PgDb::create("e2e");
    let url = db.url.clone();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let stages = Stages::start(dir.path(), &root, None).await;
    // One replica runs jobs, the other only serves the APIs: whatever the second accepts runs on the first.
    let runner = Proc::start("gateway", dir.path(), &stages.gateway_toml(&root, &url, None, 10)).await;
    let api_only = stages.gateway_toml(&root, &url, None, 10).replace("[http]", "[stages]\nmax_running = 0\n\n[http]");
    let front = Proc::start("gateway", dir.path(), &api_only).await;

    let job = client(&runner).await.submit(request("a white circle moving right", 1000)).await.unwrap().into_inner();
    let mut watch = client(&front)
        .await
        .watch(WatchJobRequest { id: job.id.clone(), after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    while let Some(ev) = watch.message().await.unwrap() {
        if matches!(&ev.event, Some(Event::Denoising(d)) if d.step >= 2) {
            break;
        }
    }
    let cancelled = client(&front).await.cancel(CancelJobRequest { id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.state, JobState::Cancelled as i32);
    assert!(matches!(collect(watch).await.last().unwrap().event, Some(Event::Cancelled(_))));
    let t0 = std::time::Instant::now();
    while stages.denoiser().metric("denoiser_active_requests").await != Some(0.0) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the denoiser kept the cancelled job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let steps = stages.denoiser().metric("denoiser_steps_total").await.unwrap();
    assert!(steps < 100.0, "{steps} of 1000 steps ran");

    let events = collect(client(&front).await.generate(request("a black square", 3)).await.unwrap().into_inner()).await;
    assert!(matches!(events.last().unwrap().event, Some(Event::Completed(_))));
    drop((runner, front, db));
}
