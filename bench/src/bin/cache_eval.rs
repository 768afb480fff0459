//! Videos for the step-caching quality evaluation (`models/vidmesh_tiny/cache_eval.py` writes the cases and scores
//! the results): `cache_eval CASES.jsonl OUT_DIR [--tiers off,balanced,fast] [--bundle DIR] [--concurrency N]`.
//!
//! Each line of CASES.jsonl: `{"id", "prompt", "seed", "frames", "height", "width"}`. For every tier, every case is
//! generated through the same engines as `vidmesh generate` (the denoiser batching the concurrent requests step by
//! step, which leaves each result equal to its solo run) and written as `OUT_DIR/<tier>/<id>.rgb` (decoded RGB8
//! frames, no watermark, no codec) with `OUT_DIR/<tier>/<id>.json` (`frames`, `height`, `width`). Prints, per tier,
//! the wall time and the share of steps whose DiT tail was skipped, and writes them to `OUT_DIR/tiers.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use vidmesh_cli::mesh::{Job, Mesh};

struct Args {
    cases: PathBuf,
    out: PathBuf,
    tiers: Vec<String>,
    bundle: String,
    concurrency: usize,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut a = Args {
        cases: PathBuf::new(),
        out: PathBuf::new(),
        tiers: vec!["off".into(), "balanced".into(), "fast".into()],
        bundle: concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vidmesh-tiny").into(),
        concurrency: 8,
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--tiers" => a.tiers = it.next().context("--tiers LIST")?.split(',').map(String::from).collect(),
            "--bundle" => a.bundle = it.next().context("--bundle DIR")?,
            "--concurrency" => a.concurrency = it.next().context("--concurrency N")?.parse()?,
            _ => pos.push(x),
        }
    }
    match &pos[..] {
        [c, o] => (a.cases, a.out) = (c.into(), o.into()),
        _ => {
            bail!("usage: cache_eval CASES.jsonl OUT_DIR [--tiers off,balanced,fast] [--bundle DIR] [--concurrency N]")
        }
    }
    Ok(a)
}

async fn one(mesh: &Mesh, case: &Value, tier: &str, dir: &Path) -> Result<()> {
    let s = |k: &str| case[k].as_str().unwrap_or_default().to_string();
    let u = |k: &str| case[k].as_u64().unwrap_or(0);
    let m = mesh.manifest();
    let job = Job {
        prompt: s("prompt"),
        negative_prompt: String::new(),
        seed: u("seed"),
        frames: u("frames") as u32,
        height: u("height") as u32,
        width: u("width") as u32,
        fps: m.video.default_fps,
        steps: 0,
        guidance: None,
        cache: tier.to_string(),
    };
    let latents = mesh.latents(&job, |_| {}).await.with_context(|| s("id"))?;
    let frames = mesh.decode_frames(&latents, job.seed, "eval", |_| {}).await?;
    let id = s("id");
    std::fs::write(dir.join(format!("{id}.rgb")), frames.concat())?;
    let meta = json!({"frames": frames.len(), "height": job.height, "width": job.width});
    std::fs::write(dir.join(format!("{id}.json")), meta.to_string())?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = args()?;
    let env = vidmesh_cli::local::with_onnxruntime(std::env::vars().collect())?;
    let store = tempfile::tempdir()?;
    let mesh = Mesh::load(Path::new(&a.bundle), store.path(), "", None, &env).await?;
    let text = std::fs::read_to_string(&a.cases).with_context(|| format!("reading {}", a.cases.display()))?;
    let cases: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let mut report = serde_json::Map::new();
    for tier in &a.tiers {
        let dir = a.out.join(tier);
        std::fs::create_dir_all(&dir)?;
        let (skipped0, run0) = mesh.cache_steps();
        let t0 = Instant::now();
        let results: Vec<Result<()>> = futures::stream::iter(&cases)
            .map(|c| one(&mesh, c, tier, &dir))
            .buffer_unordered(a.concurrency)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let secs = t0.elapsed().as_secs_f64();
        let (skipped, run) = mesh.cache_steps();
        let (skipped, run) = (skipped - skipped0, run - run0);
        let share = if skipped + run > 0 { skipped as f64 / (skipped + run) as f64 } else { 0.0 };
        eprintln!("{tier}: {} videos in {secs:.1}s; DiT tail skipped on {:.1}% of steps", cases.len(), 100.0 * share);
        report.insert(
            tier.clone(),
            json!({"videos": cases.len(), "seconds": secs, "skipped_steps": skipped,
            "run_steps": run, "skipped_share": share}),
        );
    }
    std::fs::write(a.out.join("tiers.json"), serde_json::to_string_pretty(&Value::Object(report))?)?;
    Ok(())
}
