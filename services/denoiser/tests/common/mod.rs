//! What the denoiser's integration tests share: the stage served in-process on 127.0.0.1:0 with the vidmesh-tiny
//! bundle, a real gRPC client, and the fixture cases of the reference sampler.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use vidmesh_denoiser::{Config, Denoiser, SERVICE_NAME};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, denoise_event::Event as Ev, denoiser_client::DenoiserClient};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::tensor::Assembler;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Running {
    pub client: DenoiserClient<Channel>,
    pub health: HealthClient<Channel>,
    pub s: vidmesh_testkit::Served,
}

/// Serves the stage with `config` on the bundled model, its load waiting for `gate`.
pub async fn start_gated(mut config: Config, gate: impl Future<Output = ()> + Send + 'static) -> Running {
    config.model.bundle = repo().join("models/vidmesh-tiny").display().to_string();
    let s = vidmesh_testkit::serve_gated::<Denoiser>(config, gate).await;
    Running { client: DenoiserClient::new(s.channel.clone()), health: HealthClient::new(s.channel.clone()), s }
}

pub async fn start(config: Config) -> Running {
    let mut r = start_gated(config, std::future::ready(())).await;
    r.s.serving(SERVICE_NAME).await; // fails fast (not hang) when the stage cannot load its model
    r
}

pub fn fixture(case: usize) -> safetensors::SafeTensors<'static> {
    let bytes = std::fs::read(repo().join(format!("models/fixtures/vidmesh-tiny/case{case}.safetensors"))).unwrap();
    safetensors::SafeTensors::deserialize(Box::leak(bytes.into_boxed_slice())).unwrap()
}

pub fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo().join("models/fixtures/vidmesh-tiny/cases.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["cases"].as_array().unwrap().clone()
}

pub fn tensor(fx: &safetensors::SafeTensors<'_>, name: &str) -> TensorF32 {
    let t = fx.tensor(name).unwrap();
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    TensorF32::new(t.shape().to_vec(), data)
}

/// A request for fixture case `i`, with the fixture's own text states.
pub fn case_request(i: usize) -> DenoiseRequest {
    let (c, fx) = (&cases()[i], fixture(i));
    let n = |k: &str| c[k].as_u64().unwrap() as u32;
    DenoiseRequest {
        prompt_states: Some(tensor(&fx, "text_states").to_proto()),
        negative_states: Some(tensor(&fx, "uncond_text_states").to_proto()),
        seed: c["seed"].as_str().unwrap().parse().unwrap(),
        frames: n("frames"),
        height: n("height"),
        width: n("width"),
        steps: n("steps"),
        guidance: Some(c["guidance"].as_f64().unwrap() as f32),
        shift: Some(c["shift"].as_f64().unwrap() as f32),
        ..Default::default()
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Ev>,
    pub latents: Option<TensorF32>,
    pub error: Option<Status>,
}

pub async fn run(client: &mut DenoiserClient<Channel>, req: DenoiseRequest) -> Outcome {
    let mut out = Outcome::default();
    let mut stream = match client.denoise(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let mut asm = Assembler::new("latents");
    loop {
        match stream.message().await {
            Ok(Some(ev)) => {
                let ev = ev.event.unwrap();
                if let Ev::Latents(chunk) = &ev
                    && let Some(t) = asm.push(chunk.clone()).unwrap()
                {
                    out.latents = Some(t);
                }
                out.events.push(ev);
            }
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}

/// Runs `reqs` concurrently: their outcomes, and the most requests any of their DiT calls shared.
pub async fn run_together(r: &Running, reqs: &[DenoiseRequest]) -> (Vec<Outcome>, u32) {
    let calls = reqs.iter().map(|q| {
        let (mut c, q) = (r.client.clone(), q.clone());
        async move { run(&mut c, q).await }
    });
    let together = futures::future::join_all(calls).await;
    let widest = together
        .iter()
        .flat_map(|o| &o.events)
        .filter_map(|e| if let Ev::Progress(p) = e { Some(p.batch_requests) } else { None })
        .max()
        .unwrap();
    (together, widest)
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn metric(r: &Running, name: &str) -> f64 {
    vidmesh_runtime::metrics::value(&r.s.registry, name).unwrap_or(0.0)
}
