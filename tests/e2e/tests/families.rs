//! Parity with diffusers for the exported model families (models/fixtures/<bundle>/, written by
//! `python -m vidmesh_export.goldens` from diffusers' own pipeline run with the bundle's seeded noise as `latents`):
//! each stage served on 127.0.0.1:0 must reproduce the golden token ids and text states (≤ 1e-4), the latents after
//! the first step and after the last (≤ 1e-3), and the decoded frames (≤ 1/255), for every case (two sizes of
//! different aspect ratio, two frame counts of the family's rule).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vidmesh_denoiser::engine::dit::{Dit, DitBatch};
use vidmesh_denoiser::engine::scheduler::{Kind, Options, Prediction, Scheduler, guide, rescale};
use vidmesh_model::{Bundle, Onnx, OnnxConfig, Part};
use vidmesh_proto::denoiser::v1::DenoiseRequest;
use vidmesh_proto::text_encoder::v1::{EncodeRequest, text_encoder_client::TextEncoderClient};
use vidmesh_runtime::TensorF32;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    st.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn i64s(st: &SafeTensors<'_>, name: &str) -> Vec<i64> {
    st.tensor(name).unwrap().data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The case's seed (a string in JSON: seeds go up to 2^64).
fn seed(case: &serde_json::Value) -> u64 {
    case["seed"].as_str().map_or_else(|| case["seed"].as_u64().unwrap(), |s| s.parse().unwrap())
}

async fn stage(kind: vidmesh_testmesh::Kind, bundle: &Path, root: &Path, shutdown: &CancellationToken) -> Channel {
    let setup = vidmesh_testmesh::Setup {
        watermark_key_hex: String::new(),
        bundle: bundle.display().to_string(),
        ..vidmesh_testmesh::Setup::new(root)
    };
    let addr = vidmesh_testmesh::serve(kind, &setup, &prometheus::Registry::new(), shutdown).await.unwrap();
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// The case's frame rate (the bundle's default when the family's pipeline takes none).
fn fps(case: &serde_json::Value, m: &vidmesh_model::Manifest) -> u32 {
    case["fps"].as_u64().map_or(m.video.default_fps, |f| f as u32)
}

/// The DiT's first step run by hand from the golden noise and states: the graph (tensor names, timestep rounding,
/// text mask of the real tokens, extra inputs) and the scheduler's first update with the bundle's options and the
/// case's CFG scale at that step, without the batcher.
fn first_step(bundle: &Bundle, case: &serde_json::Value, st: &SafeTensors<'_>) -> Vec<f32> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).unwrap();
    let m = &bundle.manifest;
    let session = onnx.session(&bundle.path(&m.dit.component.file)).unwrap();
    let mut dit = Dit::new(Some(session), m.dit.names.clone(), m.dit.extra_inputs.clone(), None);
    let steps = case["steps"].as_u64().unwrap() as u32;
    let shape = st.tensor("noise").unwrap().shape().to_vec();
    let latent_shape = [shape[0], shape[1], shape[2], shape[3]];
    let options = Options::for_request(m, latent_shape, seed(case));
    let shift = case["shift"].as_f64().map_or(m.scheduler.shift, |s| s as f32);
    let kind = Kind::parse(&m.scheduler.kind).unwrap();
    let mut sched =
        Scheduler::with_options(kind, Prediction::parse(&m.dit.prediction).unwrap(), steps, shift, 0, &options);
    let t = sched.model_timestep(0, m.dit.timestep_scale as f32, m.dit.timestep_rounding);
    let (tokens, hidden) = (m.text_encoder.max_tokens, m.text_encoder.hidden_size);
    let mut x = f32s(st, "noise");
    let fps = fps(case, m) as f32;
    let g = sched.guidance(0, case["guidance"].as_f64().unwrap() as f32, m.scheduler.dynamic_cfg);
    let pooled = |name: &str| st.tensor(name).map(|_| f32s(st, name)).unwrap_or_default();
    let run = |dit: &mut Dit, states: Vec<f32>, real: usize, pooled: Vec<f32>, x: &[f32]| {
        let mut padded = vec![0.0; tokens * hidden];
        padded[..states.len()].copy_from_slice(&states);
        dit.run(DitBatch {
            rows: 1,
            latent_shape,
            latents: x.to_vec(),
            timesteps: vec![t],
            tokens,
            hidden,
            states: padded,
            mask: (0..tokens).map(|i| i64::from(i < real)).collect(),
            fps: vec![fps],
            guidance: vec![g],
            pooled,
        })
        .unwrap()
    };
    let mut v = run(&mut dit, f32s(st, "text_states"), i64s(st, "input_ids").len(), pooled("pooled"), &x);
    if m.dit.guidance != vidmesh_model::GuidanceMode::Embedded {
        let negative = f32s(st, "neg_text_states");
        let vu = run(&mut dit, negative, i64s(st, "neg_input_ids").len(), pooled("neg_pooled"), &x);
        let cond = v.clone();
        guide(&mut v, &vu, g);
        if let Some(phi) = case["guidance_rescale"].as_f64().filter(|&r| r != 0.0) {
            rescale(&mut v, &cond, phi as f32);
        }
    }
    sched.step(0, &mut x, &v);
    x
}

async fn family_matches_diffusers(name: &str) {
    let bundle_dir = repo().join("models").join(name);
    let fixtures = repo().join("models/fixtures").join(name);
    let bundle = Bundle::open(&bundle_dir, &[Part::TextEncoder, Part::Dit, Part::VaeDecoder]).unwrap();
    let storage = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let te = stage(vidmesh_testmesh::Kind::TextEncoder, &bundle_dir, storage.path(), &shutdown).await;
    let dn = stage(vidmesh_testmesh::Kind::Denoiser, &bundle_dir, storage.path(), &shutdown).await;
    let mut dc_cfg = vidmesh_decoder::Config::default();
    dc_cfg.model.bundle = bundle_dir.display().to_string();
    dc_cfg.storage.local_root = storage.path().display().to_string();
    let env: HashMap<String, String> = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).unwrap();
    let decoder = vidmesh_decoder::engine::Decoder::load(&dc_cfg, &onnx).await.unwrap();

    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 4, "two sizes x two frame counts");
    let mut report = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let bytes = std::fs::read(fixtures.join(format!("case{k}.safetensors"))).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        let negative = case["negative_prompt"].as_str().unwrap();

        // 1. text-encoder over gRPC: token ids exactly, states (and a second encoder's pooled vector) within 1e-4.
        // Models with embedded guidance take no negative prompt: only the prompt is encoded and sent on.
        let cfg = bundle.manifest.takes_negative();
        let prompts = if cfg { vec![prompt.into(), negative.into()] } else { vec![prompt.into()] };
        let enc = TextEncoderClient::new(te.clone())
            .encode(EncodeRequest { prompts, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(enc.encodings[0].token_ids, i64s(&st, "input_ids"), "case {k}: prompt token ids");
        let states = TensorF32::from_proto("s", enc.encodings[0].hidden_states.as_ref()).unwrap();
        let mut d_text = max_abs(&states.data, &f32s(&st, "text_states"));
        if cfg {
            assert_eq!(enc.encodings[1].token_ids, i64s(&st, "neg_input_ids"), "case {k}: negative token ids");
            let neg = TensorF32::from_proto("s", enc.encodings[1].hidden_states.as_ref()).unwrap();
            d_text = d_text.max(max_abs(&neg.data, &f32s(&st, "neg_text_states")));
        }
        if bundle.manifest.text_encoder_2.is_some() {
            let pooled = TensorF32::from_proto("p", enc.encodings[0].pooled.as_ref()).unwrap();
            d_text = d_text.max(max_abs(&pooled.data, &f32s(&st, "pooled")));
        }
        assert!(d_text <= 1e-4, "case {k}: text states differ by {d_text}");

        // 2. the first step by hand, then the whole run through the denoiser service.
        let d_first = max_abs(&first_step(&bundle, case, &st), &f32s(&st, "latents_step1"));
        assert!(d_first <= 1e-3, "case {k}: latents after the first step differ by {d_first}");
        let (frames, height, width) = (
            case["frames"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
            case["width"].as_u64().unwrap() as u32,
        );
        let latents = vidmesh_testmesh::denoise(
            dn.clone(),
            DenoiseRequest {
                prompt_states: enc.encodings[0].hidden_states.clone(),
                negative_states: enc.encodings.get(1).and_then(|e| e.hidden_states.clone()),
                prompt_real_tokens: enc.encodings[0].real_tokens,
                negative_real_tokens: enc.encodings.get(1).map_or(0, |e| e.real_tokens),
                prompt_pooled: enc.encodings[0].pooled.clone(),
                negative_pooled: enc.encodings.get(1).and_then(|e| e.pooled.clone()),
                fps: fps(case, &bundle.manifest),
                seed: seed(case),
                frames,
                height,
                width,
                steps: case["steps"].as_u64().unwrap() as u32,
                guidance: Some(case["guidance"].as_f64().unwrap() as f32),
                guidance_rescale: case["guidance_rescale"].as_f64().map(|r| r as f32),
                // Families whose shift follows the size (LTX-Video) refuse an explicit one.
                shift: case["shift"]
                    .as_f64()
                    .filter(|_| bundle.manifest.scheduler.dynamic_shift.is_none())
                    .map(|s| s as f32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let want = f32s(&st, "latents_final");
        let d_final = max_abs(&latents.data, &want);
        assert!(d_final <= 1e-3, "case {k}: final latents differ by {d_final}");

        // 3. the decoder's VAE on the golden latents: every frame within 1/255.
        let golden = TensorF32::new(latents.shape.clone(), want);
        let mut got = Vec::new();
        let sink = |_, f: Vec<u8>| {
            got.push(f);
            Ok(())
        };
        let (n, h, w) = decoder.decode_frames(&golden, seed(case), sink, |_, _| {}).await.unwrap();
        assert_eq!((n as u32, h as u32, w as u32), (frames, height, width), "case {k}: decoded geometry");
        let reference = f32s(&st, "frames");
        let flat: Vec<u8> = got.concat();
        assert_eq!(flat.len(), reference.len(), "case {k}: frame data");
        let d_frames =
            flat.iter().zip(&reference).map(|(&a, &b)| (f32::from(a) - (b * 255.0)).abs()).fold(0.0, f32::max);
        assert!(d_frames <= 1.0 + 1e-3, "case {k}: frames differ by {d_frames} levels");
        report.push(format!(
            "case {k} {frames}x{height}x{width}: text {d_text:.1e}, step 1 {d_first:.1e}, final {d_final:.1e}, frames {d_frames:.2}/255"
        ));
    }
    eprintln!("{name} vs diffusers:\n  {}", report.join("\n  "));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan21_tiny_reproduces_diffusers() {
    family_matches_diffusers("wan2.1-tiny").await;
}

/// Wan 2.2 A14B's layout: two transformers switched at `boundary_ratio`, each with its own guidance scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan22_two_experts_reproduce_diffusers() {
    family_matches_diffusers("wan2.2-tiny").await;
}

/// Wan 2.2 TI2V-5B's text-to-video layout: a 48-channel VAE compressing 4×16×16 (patchified inside its graphs) and
/// per-token timesteps (expanded inside the DiT graph from the one the scheduler gives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan22_ti2v_reproduces_diffusers() {
    family_matches_diffusers("wan2.2-ti2v-tiny").await;
}

/// LTX-Video: T5 unmasked with its padding states kept and the mask to the DiT, the frame rate as a DiT input,
/// FlowMatchEuler with resolution-dependent shift and terminal stretch, an 8×32×32 VAE decoded whole with a decode
/// timestep and seeded decode noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltx_video_reproduces_diffusers() {
    family_matches_diffusers("ltx-tiny").await;
}

/// CogVideoX (5B style): T5 at exactly 226 tokens with no mask anywhere, v-prediction on CogVideoX's stochastic
/// DPM scheduler with dynamic CFG, RoPE folded into the DiT graph, a causal VAE decoded two latent frames per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cogvideox_reproduces_diffusers() {
    family_matches_diffusers("cogvideox-tiny").await;
}

/// HunyuanVideo: a Llama text encoder behind a cropped prompt template (a middle layer's states, mask to the DiT),
/// CLIP's pooled output and the guidance scale as DiT inputs (embedded guidance: one row, no negative prompt), and
/// a VAE decoded in blended windows as diffusers does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunyuan_video_reproduces_diffusers() {
    family_matches_diffusers("hunyuan-tiny").await;
}
