//! `--only graphs`: one request's DiT step (CFG: 2 rows) through each form of the bundle's DiT, in one run — the
//! whole graph (and, with `--compare-graph PATH`, another export of it, e.g. the graph before a fusion), and the
//! step-caching split: a step that runs the tail, and one that skips it (head + out only).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use vidmesh_denoiser::engine::cache::StepCache;
use vidmesh_denoiser::engine::dit::{Dit, DitBatch};
use vidmesh_denoiser::engine::split::{Group, SplitDit};
use vidmesh_model::{Bundle, Onnx, Part, TierPolicy};

fn stats(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    let at = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.9))
}

/// Appends the section to `out`.
pub fn dit_graphs(onnx: &Onnx, bundle: &Path, iters: usize, compare: Option<&Path>, out: &mut String) -> Result<()> {
    let b = Bundle::open(bundle, &[Part::Dit])?;
    let m = &b.manifest;
    let Some(spec) = &m.dit.cache else { bail!("{} has no [dit.cache]", bundle.display()) };
    let shape = m.latent_shape(m.video.default_frames, m.video.default_height, m.video.default_width);
    let n: usize = shape.iter().product();
    let (tokens, hidden) = (m.text_encoder.max_tokens, m.text_encoder.hidden_size);
    let batch = || DitBatch {
        rows: 2,
        latent_shape: shape,
        latents: vidmesh_denoiser::engine::noise::gaussian(7, 2 * n),
        timesteps: vec![500.0; 2],
        tokens,
        hidden,
        states: vec![0.01; 2 * tokens * hidden],
        mask: (0..2 * tokens).map(|i| i64::from(i % tokens < 12)).collect(),
        fps: vec![m.video.default_fps as f32; 2],
        guidance: vec![m.scheduler.guidance; 2],
        pooled: Vec::new(),
    };
    out.push_str(&format!(
        "\n## DiT graphs: one request's step ({}x{}x{}, CFG = 2 rows)\n\n| graph | median ms | p90 ms |\n|---|---|---|\n",
        m.video.default_frames, m.video.default_height, m.video.default_width
    ));
    let mut graphs = vec![(format!("whole graph (`{}`)", m.dit.component.file), b.path(&m.dit.component.file))];
    if let Some(p) = compare {
        graphs.push((format!("whole graph (`{}`)", p.display()), p.to_path_buf()));
    }
    let mut wholes = Vec::new();
    for (label, path) in graphs {
        let (names, extras) = (m.dit.names.clone(), m.dit.extra_inputs.clone());
        wholes.push((label, Dit::new(Some(onnx.session(&path)?), names, extras, None)));
    }
    let mut split = SplitDit::open(onnx, &b, "dit", spec, m.dit.names.clone(), m.dit.extra_inputs.clone())?;
    // A policy that skips every step after the first: the tail runs once, then never.
    let policy = TierPolicy { threshold: f32::MAX, max_skips: u32::MAX, warmup: 0, final_steps: 0 };
    let mut cache = StepCache::new(policy);
    let mut step = 0;
    // Rounds of 10 calls per form, the forms taking turns, so a slow spell of the machine hits them all alike.
    let forms = wholes.len() + 2;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); forms];
    for round in 0..(iters / 10).max(1) + 1 {
        for (f, t) in times.iter_mut().enumerate() {
            let mut one = || -> Result<(), String> {
                if f < wholes.len() {
                    wholes[f].1.run(batch()).map(|_| ())
                } else if f == wholes.len() {
                    let mut g = [Group { rows: 0..2, cache: None, step: (0, 1), expert: 0 }];
                    split.run(batch(), &mut g).map(|_| ())
                } else {
                    step += 1;
                    let mut g = [Group { rows: 0..2, cache: Some(&mut cache), step: (step, usize::MAX), expert: 0 }];
                    split.run(batch(), &mut g).map(|_| ())
                }
            };
            for _ in 0..10 {
                let s = Instant::now();
                one().map_err(anyhow::Error::msg)?;
                if round > 0 {
                    t.push(s.elapsed());
                }
            }
        }
    }
    let labels = wholes.into_iter().map(|(l, _)| l).chain([
        "split: head + tail + out (a step that runs the tail)".to_string(),
        "split: head + out (a step that skips the tail)".to_string(),
    ]);
    for (label, t) in labels.zip(times) {
        let (med, p90) = stats(t);
        out.push_str(&format!("| {label} | {med:.2} | {p90:.2} |\n"));
    }
    Ok(())
}
