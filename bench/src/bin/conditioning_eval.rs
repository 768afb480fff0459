//! Conditioned generations for the shapes-world evaluation (`models/vidmesh_tiny/conditioning_eval.py` writes the
//! cases and scores the results): `conditioning_eval CASES.jsonl OUT_DIR [BUNDLE_DIR]`.
//!
//! Each line of CASES.jsonl: `{"id", "mode": "i2v" | "edit" | "extend", "prompt", "seed", "reference", "frames",
//! "strength", "steps"}` — `reference` a PNG image, or a directory of PNG frames (`frame_0000.png`, …) that is
//! encoded to an H.264 MP4 here, so the video goes through the same decode → fit → VAE-encode path as an upload;
//! `frames`: the output's frames (i2v), 0 (edit: the source's length) or the new segment's (extend). Writes
//! `OUT_DIR/<id>.rgb` (the decoded frames, RGB8, no watermark, no codec) and `OUT_DIR/<id>.json` (`frames`,
//! `height`, `width`), through the same engines and conditioning code as `vidmesh generate`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::Value;
use vidmesh_cli::mesh::{Conditioning, Job, Mesh, Mode};

fn reference(path: &Path) -> Result<Vec<u8>> {
    if !path.is_dir() {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let mut frames = Vec::new();
    let (mut w, mut h) = (0, 0);
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "png")) {
        let img = image::open(p).with_context(|| format!("reading {}", p.display()))?.to_rgb8();
        (w, h) = (img.width() as usize, img.height() as usize);
        frames.push(img.into_raw());
    }
    let video = vidmesh_video::Video { width: w, height: h, fps: 8.0, frames };
    Ok(vidmesh_video::encode_mp4(&video, &Default::default())?)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (cases, out) = match (args.get(1), args.get(2)) {
        (Some(c), Some(o)) => (PathBuf::from(c), PathBuf::from(o)),
        _ => anyhow::bail!("usage: conditioning_eval CASES.jsonl OUT_DIR [BUNDLE_DIR]"),
    };
    let bundle =
        args.get(3).cloned().unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vidmesh-tiny").into());
    std::fs::create_dir_all(&out)?;
    let env = vidmesh_cli::local::with_onnxruntime(std::env::vars().collect())?;
    let store = tempfile::tempdir()?;
    let mesh = Mesh::load(Path::new(&bundle), store.path(), "", None, &env).await?;
    let m = mesh.manifest().clone();
    let base = cases.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(&cases).with_context(|| format!("reading {}", cases.display()))?;
    let t0 = std::time::Instant::now();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line)?;
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        let u = |k: &str| c[k].as_u64().unwrap_or(0);
        let mode = match s("mode").as_str() {
            "i2v" => Mode::ImageToVideo,
            "edit" => Mode::Edit,
            "extend" => Mode::Extend,
            other => anyhow::bail!("case {}: unknown mode {other:?}", s("id")),
        };
        let media = reference(&base.join(s("reference")))?;
        let cond = Conditioning { mode, media, strength: c["strength"].as_f64().unwrap_or(0.0) as f32 };
        let job = Job {
            prompt: s("prompt"),
            negative_prompt: String::new(),
            seed: u("seed"),
            frames: u("frames") as u32,
            height: m.video.default_height,
            width: m.video.default_width,
            fps: m.video.default_fps,
            steps: u("steps") as u32,
            guidance: None,
            cache: String::new(),
        };
        let latents = mesh.conditioned_latents(&job, Some(&cond), |_| {}).await.with_context(|| s("id"))?;
        let frames = mesh.decode_frames(&latents, job.seed, "eval", |_| {}).await?;
        let id = s("id");
        std::fs::write(out.join(format!("{id}.rgb")), frames.concat())?;
        let meta = serde_json::json!({"frames": frames.len(), "height": job.height, "width": job.width});
        std::fs::write(out.join(format!("{id}.json")), meta.to_string())?;
        n += 1;
    }
    eprintln!("{n} cases in {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}
