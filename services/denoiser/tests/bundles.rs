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
