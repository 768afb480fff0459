//! Peak memory of one reference encode (the decoder's Encode path): `encode_memory <frames> [WIDTHxHEIGHT]` makes a
//! `frames`-frame H.264 MP4 of moving noise at the size (default 256x256), encodes it to latents at vidmesh-tiny's
//! default size through the decoder engine (decode frame by frame → fit → VAE encoder in temporal chunks) and prints
//! `frames=<n> peak_rss_kib=<VmHWM> after_load_kib=<…> mp4_bytes=<…>`. Run once per process: VmHWM is a high-water
//! mark.

use anyhow::{Context as _, Result};
use vidmesh_model::{Onnx, OnnxConfig};

#[path = "../rss.rs"]
mod rss;
use rss::vm_hwm_kib;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let frames: usize = args.get(1).context("usage: encode_memory <frames> [WIDTHxHEIGHT]")?.parse()?;
    let (w, h): (usize, usize) = match args.get(2).and_then(|s| s.split_once('x')) {
        Some((w, h)) => (w.parse()?, h.parse()?),
        None => (256, 256),
    };
    // The source: a gradient moving one pixel per frame, with a little texture.
    let video = vidmesh_video::Video {
        width: w,
        height: h,
        fps: 8.0,
        frames: (0..frames)
            .map(|t| {
                (0..w * h * 3)
                    .map(|i| {
                        let (px, c) = (i / 3, i % 3);
                        let (x, y) = (px % w, px / w);
                        ((x + t + 7 * c) ^ (y * 3)) as u8
                    })
                    .collect()
            })
            .collect(),
    };
    let mp4 = vidmesh_video::encode_mp4(&video, &Default::default())?;
    drop(video);
    let env = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env)?;
    let dir = tempfile::tempdir()?;
    let mut config = vidmesh_decoder::Config::default();
    config.model.bundle = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vidmesh-tiny").into();
    config.storage.local_root = dir.path().display().to_string();
    let decoder = vidmesh_decoder::engine::Decoder::load(&config, &onnx).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let m = decoder.manifest.clone();
    let before = vm_hwm_kib()?;
    let ask = vidmesh_decoder::engine::encode::Ask {
        width: m.video.default_width as usize,
        height: m.video.default_height as usize,
        frames: 0,
        still: false,
    };
    let bytes = mp4.len();
    let (latents, info) = decoder.encode(mp4.into(), ask, |_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(info.frames == frames - frames % 4, "encoded {} frames of {frames}", info.frames);
    println!(
        "frames={frames} latent_frames={} peak_rss_kib={} after_load_kib={before} mp4_bytes={bytes}",
        latents.shape[1],
        vm_hwm_kib()?
    );
    Ok(())
}
