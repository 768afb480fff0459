//! The text-encoder served in-process on 127.0.0.1:0 with the vidmesh-tiny bundle, called by a real gRPC client.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vidmesh_proto::text_encoder::v1::{EncodeRequest, TruncationPolicy, text_encoder_client::TextEncoderClient};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::health::wait_serving;
use vidmesh_runtime::stage::{Options, serve_with};
use vidmesh_text_encoder::{Config, SERVICE_NAME, TextEncoder};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Running {
    client: TextEncoderClient<Channel>,
    health: HealthClient<Channel>,
    s: vidmesh_testkit::Served,
}

/// Serves the stage with `config` on the bundled model, its load waiting for `gate`.
async fn start_gated(mut config: Config, gate: impl Future<Output = ()> + Send + 'static) -> Running {
    config.model.bundle = repo().join("models/vidmesh-tiny").display().to_string();
    let s = vidmesh_testkit::serve_gated::<TextEncoder>(config, gate).await;
    Running { client: TextEncoderClient::new(s.channel.clone()), health: HealthClient::new(s.channel.clone()), s }
}

async fn start(config: Config) -> Running {
    let mut r = start_gated(config, std::future::ready(())).await;
    r.s.serving(SERVICE_NAME).await; // fails fast (not hang) when the stage cannot load its model
    r
}

fn req(prompts: &[&str]) -> EncodeRequest {
    EncodeRequest { prompts: prompts.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

fn fixture(case: &str) -> safetensors::SafeTensors<'static> {
    let bytes = std::fs::read(repo().join(format!("models/fixtures/vidmesh-tiny/{case}.safetensors"))).unwrap();
    safetensors::SafeTensors::deserialize(Box::leak(bytes.into_boxed_slice())).unwrap()
}

fn f32s(t: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn i64s(t: &safetensors::tensor::TensorView<'_>) -> Vec<i64> {
    t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[tokio::test]
async fn text_states_match_golden_fixtures() {
    let mut r = start(Config::default()).await;
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/fixtures/vidmesh-tiny/cases.json")).unwrap())
            .unwrap();
    for (i, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let fx = fixture(&format!("case{i}"));
        let prompt = case["prompt"].as_str().unwrap();
        let negative = case["negative_prompt"].as_str().unwrap();
        let resp = r.client.encode(req(&[prompt, negative])).await.unwrap().into_inner();
        assert_eq!(resp.model, "vidmesh-tiny");
        for (enc, (ids, states)) in
            resp.encodings.iter().zip([("input_ids", "text_states"), ("uncond_input_ids", "uncond_text_states")])
        {
            assert_eq!(enc.token_ids, i64s(&fx.tensor(ids).unwrap()), "case {i} {ids}");
            let got = TensorF32::from_proto("hidden_states", enc.hidden_states.as_ref()).unwrap();
            let want = fx.tensor(states).unwrap();
            assert_eq!(got.shape, want.shape());
            let d = max_diff(&got.data, &f32s(&want));
            assert!(d <= 1e-4, "case {i} {states}: max abs diff {d}");
        }
    }
    r.s.shutdown.cancel();
    r.s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn concurrent_requests_share_runs_and_equal_solo_results() {
    let mut config = Config::default();
    config.batching.max_wait_ms = 200;
    config.cache_capacity = 0;
    let r = start(config).await;
    let prompts: Vec<String> = (0..8).map(|i| format!("a red circle moving left number {i}")).collect();
    let calls = prompts.iter().map(|p| {
        let mut c = r.client.clone();
        let p = p.clone();
        async move { c.encode(req(&[&p])).await.unwrap().into_inner() }
    });
    let together = futures::future::join_all(calls).await;
    let runs = vidmesh_runtime::metrics::value(&r.s.registry, "text_encoder_batch_size").unwrap();
    // One warm-up run plus fewer runs than requests.
    assert!(runs < 1.0 + prompts.len() as f64, "{runs} model runs for {} concurrent prompts", prompts.len());
    for (p, t) in prompts.iter().zip(&together) {
        let solo = r.client.clone().encode(req(&[p])).await.unwrap().into_inner();
        let a = TensorF32::from_proto("a", t.encodings[0].hidden_states.as_ref()).unwrap();
        let b = TensorF32::from_proto("b", solo.encodings[0].hidden_states.as_ref()).unwrap();
        assert!(max_diff(&a.data, &b.data) <= 1e-5);
    }
}

#[tokio::test]
async fn cache_returns_identical_states_and_empty_prompt_is_hot() {
    let mut r = start(Config::default()).await;
    let first = r.client.encode(req(&["", "a blue square moving up"])).await.unwrap().into_inner();
    assert!(first.encodings[0].cached, "the empty prompt is computed at warm-up");
    assert!(!first.encodings[1].cached);
    let again = r.client.encode(req(&["a blue square moving up"])).await.unwrap().into_inner();
    assert!(again.encodings[0].cached);
    assert_eq!(again.encodings[0].hidden_states, first.encodings[1].hidden_states);
}

#[tokio::test]
async fn long_prompts_truncate_or_are_refused() {
    let mut r = start(Config::default()).await;
    let long = "a small red circle moving left slowly ".repeat(10);
    let resp = r.client.encode(req(&[&long])).await.unwrap().into_inner();
    let enc = &resp.encodings[0];
    assert!(enc.truncated);
    assert_eq!(enc.token_ids.len(), 48);
    assert!(enc.original_tokens > 48);
    assert_eq!(*enc.token_ids.last().unwrap(), 102, "[SEP] stays at the end");
    let mut refuse = req(&["short one", &long]);
    refuse.truncation = TruncationPolicy::Reject as i32;
    let err = r.client.encode(refuse).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("prompt 1 has"), "{}", err.message());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let mut r = start(Config::default()).await;
    let cases = [
        (req(&[]), Code::InvalidArgument, "prompts is empty"),
        (EncodeRequest { model: "sora-2".into(), ..req(&["x"]) }, Code::NotFound, "not served here"),
        (req(&vec!["x"; 65]), Code::InvalidArgument, "at most 64"),
        (req(&[&"y".repeat(5000)]), Code::InvalidArgument, "bytes"),
        (EncodeRequest { truncation: 9, ..req(&["x"]) }, Code::InvalidArgument, "truncation"),
        (req(&["x", "\0"]), Code::InvalidArgument, "prompt 1 holds a NUL byte at byte 0"),
        (req(&["a\u{1b}[2J"]), Code::InvalidArgument, "prompt 0 holds the control character U+001B"),
    ];
    for (request, code, text) in cases {
        let err = r.client.encode(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(err.message().contains(text), "{:?} lacks {text:?}", err.message());
    }
    assert_eq!(r.client.encode(req(&["still up"])).await.unwrap().into_inner().encodings.len(), 1);
}

#[tokio::test]
async fn health_is_not_serving_until_the_model_is_warm() {
    let (open, gate) = oneshot::channel::<()>();
    let mut r = start_gated(Config::default(), async move {
        let _ = gate.await;
    })
    .await;
    let status = r.health.check(HealthCheckRequest { service: SERVICE_NAME.into() }).await.unwrap().into_inner();
    assert_eq!(status.status, ServingStatus::NotServing as i32);
    let err = r.client.encode(req(&["too early"])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    open.send(()).unwrap();
    wait_serving(r.s.addr, SERVICE_NAME).await.unwrap();
    r.client.encode(req(&["now"])).await.unwrap();
    r.s.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), r.s.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_bundle_stops_the_server_with_a_named_error() {
    let mut config = Config::default();
    config.model.bundle = "/nonexistent/bundle".into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err =
        serve_with::<TextEncoder, _>(config, listener, CancellationToken::new(), Options::local()).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/bundle/model.toml"), "{err}");
}
