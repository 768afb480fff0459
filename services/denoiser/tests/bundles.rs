//! The denoiser refuses, at load, a DiT whose graph declares a dynamic frame axis but always returns the same
//! number of frames (models/fixtures/frozen-frames: a graph frozen at 2 latent frames) — the warm-up runs the two
//! smallest frame counts and checks that the output follows the input.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use vidmesh_denoiser::Config;
use vidmesh_denoiser::engine::Denoiser;
use vidmesh_model::{Onnx, OnnxConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(bundle: &str) -> Result<Denoiser, vidmesh_denoiser::Error> {
    let env = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).expect("ORT_DYLIB_PATH must point at libonnxruntime");
    let mut config = Config::default();
    config.model.bundle = repo().join(bundle).display().to_string();
    Denoiser::load(&config, &onnx, &prometheus::Registry::new())
}

#[test]
fn a_graph_with_a_frozen_frame_axis_is_refused_at_load() {
    let Err(err) = load("models/fixtures/frozen-frames") else { panic!("the frozen graph was accepted") };
    let msg = err.to_string();
    assert!(msg.contains("warm-up at 9 frames of 32x32") && msg.contains("not really dynamic"), "{msg}");
    // The real export of the same manifest loads.
    load("models/wan2.1-tiny").unwrap();
}

fn states(rows: usize, width: usize) -> Option<vidmesh_proto::tensor::v1::Tensor> {
    Some(vidmesh_runtime::TensorF32::new(vec![rows, width], vec![0.1; rows * width]).to_proto())
}

fn check(d: &Denoiser, req: &vidmesh_proto::denoiser::v1::DenoiseRequest) -> Result<(), String> {
    vidmesh_denoiser::server::validate(d, &Config::default(), req, None).map(|_| ()).map_err(|e| e.to_string())
}

/// What each family's DiT needs from a request is asked for, and what it cannot use is refused, by name.
#[test]
fn family_inputs_are_required_or_refused_by_name() {
    use vidmesh_proto::denoiser::v1::DenoiseRequest;
    // HunyuanVideo: embedded guidance (no negative prompt) and CLIP's pooled vector.
    let d = load("models/hunyuan-tiny").unwrap();
    let (rows, hidden) = (d.manifest.text_encoder.max_tokens, d.manifest.text_encoder.hidden_size);
    let pooled = d.manifest.text_encoder_2.as_ref().unwrap().pooled_size;
    let ok = DenoiseRequest {
        prompt_states: states(rows, hidden),
        prompt_real_tokens: 5,
        prompt_pooled: Some(vidmesh_runtime::TensorF32::new(vec![pooled], vec![0.0; pooled]).to_proto()),
        ..Default::default()
    };
    check(&d, &ok).unwrap();
    let err = check(&d, &DenoiseRequest { negative_states: states(rows, hidden), ..ok.clone() }).unwrap_err();
    assert!(err.contains("takes no negative prompt"), "{err}");
    let err = check(&d, &DenoiseRequest { prompt_pooled: None, ..ok.clone() }).unwrap_err();
    assert!(err.contains("prompt_pooled is required"), "{err}");
    // Its padding states go to the DiT: all max_tokens rows must come, and no more real tokens than rows.
    let err = check(&d, &DenoiseRequest { prompt_states: states(7, hidden), ..ok.clone() }).unwrap_err();
    assert!(err.contains(&format!("expected [{rows}, {hidden}]")), "{err}");
    let err = check(&d, &DenoiseRequest { prompt_real_tokens: rows as u32 + 1, ..ok }).unwrap_err();
    assert!(err.contains("real tokens but only"), "{err}");

    // LTX-Video: the shift follows the size; the frame rate must be one it supports; no pooled text.
    let d = load("models/ltx-tiny").unwrap();
    let (rows, hidden) = (d.manifest.text_encoder.max_tokens, d.manifest.text_encoder.hidden_size);
    let ok = DenoiseRequest {
        prompt_states: states(rows, hidden),
        negative_states: states(rows, hidden),
        fps: 24,
        ..Default::default()
    };
    check(&d, &ok).unwrap();
    let err = check(&d, &DenoiseRequest { shift: Some(2.0), ..ok.clone() }).unwrap_err();
    assert!(err.contains("leave shift unset"), "{err}");
    let err = check(&d, &DenoiseRequest { fps: 61, ..ok.clone() }).unwrap_err();
    assert!(err.contains("fps"), "{err}");
    let err = check(&d, &DenoiseRequest { prompt_pooled: states(1, 4), ..ok }).unwrap_err();
    assert!(err.contains("takes no pooled text"), "{err}");
}
