//! Watermark evaluation on real vidmesh-tiny outputs (issue 4, item 6).
//!
//! Generates N videos in process (text-encoder → denoiser → VAE, the services' own engines), watermarks them with
//! the decoder's embedder, encodes them with the decoder's MP4 writer, attacks every file with the ffmpeg CLI (the
//! rows of [`natural::ATTACKS`]: H.264, H.265, VP9 and AV1 re-encodes, geometry, colour, timing, combined), decodes
//! with vidmesh's FFmpeg decoder and detects on the attacked positives, on negatives (the same videos unmarked, and ffmpeg's synthetic sources), and
//! under a key-shuffle null (random wrong keys against every suspect). Prints a Markdown report.
//!
//! Every marked video is given a payload (generator 7, a tag of its index); videos of at least
//! `Params::payload_min_samples` pixels × frames carry it, and the report counts where it decodes. `--enlarge K`
//! scales the generated frames K× (bilinear) before marking, standing in for a bigger model's output.
//!
//! `cargo run --release -p vidmesh-bench --bin watermark_eval -- [--videos N] [--null-trials M] [--enlarge K]
//! [--out FILE]` (needs ffmpeg on PATH and ORT_DYLIB_PATH from scripts/fetch-onnxruntime.sh). With `--natural
//! --photos DIR`: natural-content clips at realistic sizes instead (module `natural`).
//!
//! For research on the embedding: `--dump DIR` writes the unmarked frames and stops; `--from DIR` reads them back
//! instead of generating (the same videos, without the model: seconds instead of minutes); `--attacks 0,11` runs
//! only those rows of [`ATTACKS`] (by index). Rows not run are left out of the report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use vidmesh_cli::mesh::{Job, Mesh};
use vidmesh_video::{EncodeOptions, Video, encode_mp4, luma_psnr, luma_ssim};
use vidmesh_watermark::{Budget, Embedder, Key, Params, Payload, Reference, Suspect};

#[path = "../natural.rs"]
mod natural;

use natural::{ATTACKS, median};

const NEGATIVE_SOURCES: &[&str] = &["testsrc2", "mandelbrot", "life", "cellauto", "gradients", "smptehdbars"];
const NEGATIVE_SIZES: &[&str] = &["64x64", "96x64", "128x128"];

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn prompt(i: usize) -> String {
    const SIZES: [&str; 3] = ["small", "medium", "large"];
    const COLOURS: [&str; 7] = ["red", "green", "blue", "yellow", "white", "orange", "purple"];
    const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
    const MOTIONS: [&str; 6] = ["left", "right", "up", "down", "up and to the right", "down and to the left"];
    const BACKGROUNDS: [&str; 5] = ["black", "striped white", "navy", "checkered gray", "dark green"];
    format!(
        "a {} {} {} moving {} on a {} background",
        SIZES[i % 3],
        COLOURS[(i / 3) % 7],
        SHAPES[(i / 2) % 3],
        MOTIONS[(i / 5) % 6],
        BACKGROUNDS[(i / 7) % 5]
    )
}

fn ffmpeg(args: &[&str]) -> Result<()> {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().context("running ffmpeg")?;
    ensure!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Reads a video file with vidmesh's own FFmpeg decoder (what the classifier uses).
fn read_any(path: &Path) -> Result<Video> {
    Ok(vidmesh_video::decode_video(&std::fs::read(path)?)?)
}

/// `v` enlarged `k` times (bilinear).
fn enlarge(v: Video, k: usize) -> Result<Video> {
    if k <= 1 {
        return Ok(v);
    }
    let (w, h) = (v.width as u32, v.height as u32);
    let frames = v
        .frames
        .iter()
        .map(|f| {
            let img = image::RgbImage::from_raw(w, h, f.clone()).context("frame size")?;
            let k = k as u32;
            Ok(image::imageops::resize(&img, w * k, h * k, image::imageops::FilterType::Triangle).into_raw())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Video { width: v.width * k, height: v.height * k, fps: v.fps, frames })
}

/// Video `i` as `--dump` wrote it.
fn read_dump(dir: &Path, i: usize) -> Result<Video> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{i}.json")))?)
        .with_context(|| format!("{i}.json in --from"))?;
    let field = |name: &str| meta[name].as_f64().with_context(|| format!("{name} in {i}.json"));
    let (w, h, n) = (field("width")? as usize, field("height")? as usize, field("frames")? as usize);
    let raw = std::fs::read(dir.join(format!("{i}.rgb")))?;
    ensure!(raw.len() == w * h * 3 * n, "{i}.rgb: {} bytes for {n} frames of {w}x{h}", raw.len());
    let frames = raw.chunks_exact(w * h * 3).map(<[u8]>::to_vec).collect();
    Ok(Video { width: w, height: h, fps: field("fps")?, frames })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--natural") {
        return natural::run(&args);
    }
    let n: usize = arg(&args, "--videos", 40);
    let null_trials: usize = arg(&args, "--null-trials", 1_000_000);
    let scale_up: usize = arg(&args, "--enlarge", 1);
    let out_path: Option<PathBuf> =
        args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).map(Into::into);
    let dump: Option<PathBuf> = args.iter().position(|a| a == "--dump").and_then(|i| args.get(i + 1)).map(Into::into);
    let from: Option<PathBuf> = args.iter().position(|a| a == "--from").and_then(|i| args.get(i + 1)).map(Into::into);
    let selected: Vec<usize> = match args.iter().position(|a| a == "--attacks").and_then(|i| args.get(i + 1)) {
        Some(list) => {
            list.split(',').map(str::parse).collect::<Result<_, _>>().context("--attacks: indices, e.g. 0,11")?
        }
        None => (0..ATTACKS.len()).collect(),
    };
    ensure!(selected.iter().all(|&a| a < ATTACKS.len()), "--attacks: indices below {}", ATTACKS.len());
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir()?;
    let env: HashMap<String, String> = std::env::vars().collect();
    // The model is loaded only to generate; `--from` reads the videos instead.
    let mesh = match &from {
        Some(_) => None,
        None => Some(Mesh::load(&repo.join("models/vidmesh-tiny"), work.path(), "", None, &env).await?),
    };
    let key = Key::derive(b"vidmesh watermark evaluation key");
    // `--psnr-db X`: mark at this PSNR instead of the default (research on the strength).
    let params = Params { psnr_db: arg(&args, "--psnr-db", Params::default().psnr_db), ..Params::default() };
    let embedder = Embedder::new(&key, params);
    // The reference with payload decoding (the key-shuffle null uses `Suspect::reference`, without).
    let full_reference = Reference::new(&key);
    // Per attack: payloads decoded right, and decoded wrong (a CRC-passing wrong message).
    let mut carried = 0usize;
    let encode = EncodeOptions::default();

    // 1. Positives (marked, attacked) and our own unmarked outputs (negatives).
    let mut psnr = Vec::new();
    let mut luma = Vec::new();
    let mut ssim = Vec::new();
    let mut tally = natural::Tally::new();
    let mut suspects: Vec<Suspect> = Vec::new();
    let mut negatives: Vec<(String, Suspect)> = Vec::new();
    let mut detect_time = Vec::new();
    let t0 = Instant::now();
    for i in 0..n {
        let (h, w) = if i % 4 == 3 { (64, 96) } else { (64, 64) };
        let frames = if i % 3 == 2 { 32 } else { 16 };
        let job = Job {
            prompt: prompt(i),
            negative_prompt: String::new(),
            seed: 1000 + i as u64,
            frames,
            height: h,
            width: w,
            fps: 8,
            steps: 0,
            guidance: None,
            cache: String::new(),
        };
        let clean = match (&from, &mesh) {
            (Some(dir), _) => read_dump(dir, i)?,
            (None, Some(mesh)) => mesh.frames(&job).await?,
            (None, None) => unreachable!("the model is loaded whenever --from is absent"),
        };
        if let Some(dir) = &dump {
            // Unmarked frames for watermark research: raw RGB24, frame after frame, plus their geometry.
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(format!("{i}.rgb")), clean.frames.concat())?;
            let meta = serde_json::json!({
                "width": clean.width,
                "height": clean.height,
                "frames": clean.frames.len(),
                "fps": clean.fps,
                "prompt": job.prompt,
            });
            std::fs::write(dir.join(format!("{i}.json")), meta.to_string())?;
            continue;
        }
        let clean = enlarge(clean, scale_up)?;
        let payload = Payload { generator: 7, tag: Payload::tag_of(&format!("watermark_eval {i}")) };
        let embedder = embedder.with_payload(payload);
        if clean.width * clean.height * clean.frames.len() >= Params::default().payload_min_samples {
            carried += 1;
        }
        let mut marked = clean.clone();
        let mut se = 0.0;
        let total = marked.frames.len();
        for (k, f) in marked.frames.iter_mut().enumerate() {
            se += embedder.embed_frame(f, marked.width, marked.height, k, total);
        }
        psnr.push(vidmesh_watermark::psnr_of(se, marked.frames.len() * marked.width * marked.height * 3));
        let luma_mse = clean
            .frames
            .iter()
            .zip(&marked.frames)
            .map(|(a, b)| 255.0f64.powi(2) / 10f64.powf(luma_psnr(a, b) / 10.0))
            .sum::<f64>()
            / clean.frames.len() as f64;
        luma.push(vidmesh_video::psnr_from_mse(luma_mse));
        ssim.push(
            clean
                .frames
                .iter()
                .zip(&marked.frames)
                .map(|(a, b)| luma_ssim(a, b, clean.width, clean.height))
                .sum::<f64>()
                / clean.frames.len() as f64,
        );
        let marked_path = work.path().join(format!("marked{i}.mp4"));
        std::fs::write(&marked_path, encode_mp4(&marked, &encode)?)?;
        let unmarked_path = work.path().join(format!("unmarked{i}.mp4"));
        std::fs::write(&unmarked_path, encode_mp4(&clean, &encode)?)?;
        negatives.push((
            format!("vidmesh-tiny unmarked #{i}"),
            Suspect::sampled(&read_any(&unmarked_path)?, &Budget::default()),
        ));
        for (a, attack) in ATTACKS.iter().enumerate() {
            if !selected.contains(&a) {
                continue;
            }
            let bytes = natural::attack(&marked_path, work.path(), &format!("attacked{i}-{a}"), attack)?;
            let video = vidmesh_video::decode_video(&bytes)?;
            let start = Instant::now();
            let suspect = Suspect::sampled(&video, &Budget::default());
            let d = suspect.detect(&full_reference);
            detect_time.push(start.elapsed());
            tally.record(a, &d, payload);
            suspects.push(suspect);
        }
        let zs: Vec<String> = selected
            .iter()
            .map(|&a| &tally.z[a])
            .map(|v| format!("{:.2}", v.last().copied().unwrap_or(f64::NAN)))
            .collect();
        eprintln!("video {}/{n}: {:?}; z by attack: {}", i + 1, t0.elapsed(), zs.join(" "));
    }
    if dump.is_some() {
        return Ok(());
    }

    // 2. Synthetic negatives from ffmpeg's sources, re-encoded the usual way.
    for (k, src) in NEGATIVE_SOURCES.iter().enumerate() {
        for size in NEGATIVE_SIZES {
            let path = work.path().join(format!("neg-{src}-{size}.mp4"));
            let input = format!("{src}=size={size}:rate=8");
            let duration = if k % 2 == 0 { "2" } else { "4" };
            let out = path.display().to_string();
            ffmpeg(&["-f", "lavfi", "-i", &input, "-t", duration, "-c:v", "libx264", "-pix_fmt", "yuv420p", &out])?;
            negatives.push((format!("ffmpeg {src} {size}"), Suspect::sampled(&read_any(&path)?, &Budget::default())));
        }
    }

    // 3. The true key on negatives; random keys on everything (key-shuffle null).
    let negative_p: Vec<(String, f64, f64, bool)> = negatives
        .iter()
        .map(|(name, s)| {
            let d = s.detect(&full_reference);
            (name.clone(), d.z, d.p_value, d.payload.is_some())
        })
        .collect();
    let all: Vec<&Suspect> = suspects.iter().chain(negatives.iter().map(|(_, s)| s)).collect();
    let per = null_trials.div_ceil(all.len());
    let start = Instant::now();
    let mut null_p = Vec::with_capacity(per * all.len());
    let mut null_z = Vec::with_capacity(per * all.len());
    // Hits at p <= 1e-6 by kind of suspect: marked videos under a wrong key vs. unmarked ones.
    let (mut hits_marked, mut hits_unmarked) = (0usize, 0usize);
    let mut top: Vec<(f64, String)> = Vec::new();
    for (s_i, s) in all.iter().enumerate() {
        let name = if s_i < suspects.len() {
            format!("marked #{} / {}", s_i / selected.len(), ATTACKS[selected[s_i % selected.len()]].0)
        } else {
            negatives[s_i - suspects.len()].0.clone()
        };
        for k in 0..per {
            let wrong = Key::derive(format!("key-shuffle {s_i} {k}").as_bytes());
            let d = s.detect(&s.reference(&wrong));
            if d.p_value <= 1e-6 {
                if s_i < suspects.len() { hits_marked += 1 } else { hits_unmarked += 1 }
            }
            if d.z > 6.0 {
                top.push((d.z, name.clone()));
            }
            null_p.push(d.p_value);
            null_z.push(d.z);
        }
    }
    let null_time = start.elapsed();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("null hits at p <= 1e-6: {hits_marked} on marked suspects, {hits_unmarked} on unmarked");
    for (z, name) in top.iter().take(12) {
        eprintln!("  null z {z:.2}: {name}");
    }

    // 4. Report.
    let trials = null_p.len();
    let fp = |alpha: f64| null_p.iter().filter(|&&q| q <= alpha).count();
    let mut r = format!(
        "## Measured: {n} vidmesh-tiny videos (64×64 and 64×96{}, 16 and 32 frames, 8 fps), ffmpeg attacks\n\n\
         Reproduce: `cargo run --release -p vidmesh-bench --bin watermark_eval -- --videos {n} --enlarge {scale_up} --null-trials \
         {null_trials}`.\n\n\
         Watermark fidelity before encoding: PSNR min {:.2} / median {:.2} dB (luma: min {:.2} / median {:.2} dB); \
         luma SSIM min {:.4} / median {:.4}.\n\n\
         Videos carrying a payload: {carried} of {n}.\n\n{}",
        if scale_up > 1 { format!(" enlarged {scale_up}×") } else { String::new() },
        psnr.iter().copied().fold(f64::INFINITY, f64::min),
        median(psnr.clone()),
        luma.iter().copied().fold(f64::INFINITY, f64::min),
        median(luma.clone()),
        ssim.iter().copied().fold(f64::INFINITY, f64::min),
        median(ssim.clone()),
        tally.table(&selected, n),
    );
    let neg_fp3 = negative_p.iter().filter(|x| x.2 <= 1e-3).count();
    let neg_fp6 = negative_p.iter().filter(|x| x.2 <= 1e-6).count();
    let worst = negative_p.iter().max_by(|a, b| a.1.total_cmp(&b.1)).context("no negatives")?;
    let neg_payloads = negative_p.iter().filter(|x| x.3).count();
    r.push_str(&format!(
        "\nNegatives with the true key ({} videos: our unmarked outputs and ffmpeg's synthetic sources): {neg_fp3} \
         at p ≤ 1e-3, {neg_fp6} at p ≤ 1e-6; highest z {:.2} ({}); payloads decoded from them: \
         {neg_payloads}.\n\n\
         Key-shuffle null ({trials} trials: {per} random wrong keys against each of {} suspects, attacked positives \
         and negatives): {} at p ≤ 1e-3 (rate {:.2e}), {} at p ≤ 1e-6; null z median {:.2}, max {:.2}; \
         {:.1} µs per trial.\n\n\
         Detect time per clip (luma, fold, whiten, correlate; decoding excluded): median {:.2} ms, max {:.2} ms.\n",
        negative_p.len(),
        worst.1,
        worst.0,
        all.len(),
        fp(1e-3),
        fp(1e-3) as f64 / trials as f64,
        fp(1e-6),
        median(null_z.clone()),
        null_z.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        null_time.as_secs_f64() * 1e6 / trials as f64,
        median(detect_time.iter().map(Duration::as_secs_f64).collect()) * 1e3,
        detect_time.iter().map(Duration::as_secs_f64).fold(0.0, f64::max) * 1e3,
    ));
    print!("{r}");
    if let Some(path) = out_path {
        std::fs::write(&path, &r).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
