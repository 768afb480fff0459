//! `vidmesh generate` end to end against the Python reference sampler (`models/generate.sh`: the same ONNX graphs,
//! noise and schedule, driven by numpy), per step-caching tier, in one run:
//! `generate_vs_reference [--pairs N] [--out FILE.md]` (build `-p vidmesh-cli` in release first: the `vidmesh`
//! binary beside this one is what runs).
//!
//! Each pair runs the reference and `vidmesh generate --cache off|balanced|fast` once each on the same prompt and
//! seed (the order rotates from pair to pair, so no command always runs first), each a fresh process timed from
//! spawn to exit: start-up, model load, text encoding, 30 steps, decode, MP4. One untimed warm-up round first (the
//! reference's virtual environment, the page cache). Reports the median wall time of each command and the median of
//! the per-pair ratios to the reference.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

const PROMPTS: &[&str] = &[
    "a small red circle moving left slowly on a black background",
    "a large blue square drifting up and to the right quickly on a checkered brown background",
    "a yellow triangle moving down slowly on a white background",
];
const TIERS: &[&str] = &["off", "balanced", "fast"];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `cmd` to completion; its wall time in seconds.
fn timed(mut cmd: Command, what: &str) -> Result<f64> {
    let t0 = Instant::now();
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
}

fn command(name: &str, prompt: &str, seed: u64, dir: &Path, vidmesh: &Path) -> Command {
    let mut c;
    if name == "reference" {
        c = Command::new(repo().join("models/generate.sh"));
        c.args([prompt, "--seed", &seed.to_string(), "-o"]).arg(dir.join("reference.mp4"));
    } else {
        c = Command::new(vidmesh);
        c.args(["generate", prompt, "--seed", &seed.to_string(), "--cache", name, "-o"])
            .arg(dir.join(format!("{name}.mp4")));
    }
    c
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() -> Result<()> {
    let mut pairs = 6usize;
    let mut out_file: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pairs" => pairs = it.next().context("--pairs N")?.parse()?,
            "--out" => out_file = Some(it.next().context("--out FILE")?.into()),
            other => bail!("unknown argument {other:?} (usage: generate_vs_reference [--pairs N] [--out FILE.md])"),
        }
    }
    let vidmesh = std::env::current_exe()?.with_file_name("vidmesh");
    if !vidmesh.is_file() {
        bail!("{} is missing: cargo build --release -p vidmesh-cli", vidmesh.display());
    }
    let dir = tempfile::tempdir()?;
    let names: Vec<&str> = std::iter::once("reference").chain(TIERS.iter().copied()).collect();
    for name in &names {
        timed(command(name, PROMPTS[0], 0, dir.path(), &vidmesh), name)?;
    }
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for p in 0..pairs {
        let (prompt, seed) = (PROMPTS[p % PROMPTS.len()], 1 + p as u64);
        let mut this = vec![0.0; names.len()];
        for k in 0..names.len() {
            let i = (k + p) % names.len();
            this[i] = timed(command(names[i], prompt, seed, dir.path(), &vidmesh), names[i])?;
        }
        for i in 0..names.len() {
            walls[i].push(this[i]);
            ratios[i].push(this[i] / this[0]);
        }
        eprintln!(
            "pair {}: {}",
            p + 1,
            names.iter().zip(&this).map(|(n, s)| format!("{n} {s:.2}s")).collect::<Vec<_>>().join(", ")
        );
    }
    let mut md = format!(
        "| command ({pairs} runs each, same prompts and seeds) | median wall (s) | median ratio to the reference |\n|---|---|---|\n"
    );
    for (i, name) in names.iter().enumerate() {
        let label = if *name == "reference" {
            "Python reference sampler (`models/generate.sh`)".to_string()
        } else {
            format!("`vidmesh generate --cache {name}`")
        };
        md += &format!("| {label} | {:.2} | {:.2}× |\n", median(&mut walls[i]), median(&mut ratios[i]));
    }
    print!("{md}");
    if let Some(f) = out_file {
        std::fs::write(&f, &md).with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(())
}
