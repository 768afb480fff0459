//! Peak memory of one decode: `decoder_memory <frames> [chunk_latent_frames] [BUNDLE_DIR [WIDTHxHEIGHT]]` decodes
//! seeded latents of a `frames`-frame video (default: vidmesh-tiny at its default size) through the decoder engine
//! (VAE in temporal chunks, or one latent frame at a time with the feature cache for a stateful VAE → MP4 → local
//! storage in a temp dir) and prints `frames=<n> chunk=<k> peak_rss_kib=<VmHWM>`. Run once per process: VmHWM is
//! a high-water mark.

use anyhow::{Context as _, Result};
use vidmesh_model::{Onnx, OnnxConfig};
use vidmesh_runtime::TensorF32;

#[path = "../rss.rs"]
mod rss;
use rss::vm_hwm_kib;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let frames: usize = args.get(1).context("usage: decoder_memory <frames> [chunk]")?.parse()?;
    let chunk: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let bundle =
        args.get(3).cloned().unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vidmesh-tiny").into());
    let env = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env)?;
    let dir = tempfile::tempdir()?;
    let mut config = vidmesh_decoder::Config::default();
    config.model.bundle = bundle;
    config.storage.local_root = dir.path().display().to_string();
    config.chunk_latent_frames = chunk;
    let decoder = vidmesh_decoder::engine::Decoder::load(&config, &onnx).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let m = decoder.manifest.clone();
    let (w, h) = match args.get(4).and_then(|s| s.split_once('x')) {
        Some((w, h)) => (w.parse()?, h.parse()?),
        None => (m.video.default_width, m.video.default_height),
    };
    let shape = m.latent_shape(frames as u32, h, w).to_vec();
    let n = shape.iter().product();
    let latents = TensorF32::new(shape, vidmesh_denoiser::engine::noise::gaussian(1, n));
    let before = vm_hwm_kib()?;
    decoder
        .decode(&latents, m.video.default_fps, "bench", &Default::default(), |_, _| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("frames={frames} chunk={chunk} peak_rss_kib={} after_load_kib={before}", vm_hwm_kib()?);
    Ok(())
}
