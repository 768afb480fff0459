//! `watermark_eval --natural`: the watermark at realistic sizes. Natural-content clips (photographs, e.g.
//! scikit-image's, panned and zoomed) at each `--sizes` size are written losslessly, marked with `vidmesh
//! watermark`'s own function ([`vidmesh_cli::mark::watermark`]), attacked with the ffmpeg command (H.264, H.265,
//! VP9 and AV1 re-encodes, geometry, colour and timing changes, and the combined attack), decoded with vidmesh's
//! FFmpeg decoder and detected on the frames the classifier examines ([`Budget::default`]); the unmarked clips in those four formats are the real negatives, and every suspect
//! meets random wrong keys (key-shuffle null). Prints a Markdown report per size.
//!
//! `cargo run --release -p vidmesh-bench --bin watermark_eval -- --natural --photos DIR [--sizes 480x270,854x480]
//! [--clips 20] [--negatives 0] [--frames 48] [--fps 24] [--null-trials 1000000] [--out FILE]`: `--clips` marked
//! clips per size, each attacked every way and also kept unmarked as four real negatives; `--negatives` more
//! unmarked clips per size (negatives only). DIR: `scripts/eval-photos.sh` prints one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use vidmesh_watermark::{Budget, Detection, Key, Params, Payload, Reference, Suspect};

/// An attack: (name, ffmpeg video filter, encoder arguments, output extension).
pub type Attack = (&'static str, &'static str, &'static [&'static str], &'static str);

const X264: &[&str] = &["-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p"];

/// Every attack, each a full re-encode by the ffmpeg command (`none` is our own MP4 as written).
pub const ATTACKS: &[Attack] = &[
    ("none (our MP4)", "", &[], "mp4"),
    ("H.264 CRF 23", "null", X264, "mp4"),
    ("H.264 CRF 28", "null", &["-c:v", "libx264", "-crf", "28", "-pix_fmt", "yuv420p"], "mp4"),
    ("H.264 CRF 35", "null", &["-c:v", "libx264", "-crf", "35", "-pix_fmt", "yuv420p"], "mp4"),
    ("H.265 CRF 28", "null", &["-c:v", "libx265", "-crf", "28", "-x265-params", "log-level=error"], "mp4"),
    ("VP9 (CRF 32)", "null", &["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-row-mt", "1"], "webm"),
    ("AV1 (SVT-AV1 CRF 35)", "null", &["-c:v", "libsvtav1", "-crf", "35"], "mkv"),
    ("scale 0.5", "scale=trunc(iw/4)*2:trunc(ih/4)*2", X264, "mp4"),
    ("crop 90%", "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2", X264, "mp4"),
    ("crop 80%", "crop=trunc(iw*0.4)*2:trunc(ih*0.4)*2", X264, "mp4"),
    ("crop 71%", "crop=trunc(iw*0.355)*2:trunc(ih*0.355)*2", X264, "mp4"),
    ("brightness x1.2", "lutrgb=r=val*1.2:g=val*1.2:b=val*1.2", X264, "mp4"),
    ("brightness x0.5", "lutrgb=r=val*0.5:g=val*0.5:b=val*0.5", X264, "mp4"),
    ("contrast 0.7", "eq=contrast=0.7", X264, "mp4"),
    ("hue shift 30°", "hue=h=30", X264, "mp4"),
    ("30 fps", "fps=fps=30", X264, "mp4"),
    ("fps x15/24", "fps=fps=source_fps*15/24", X264, "mp4"),
    ("30% frames dropped", "select='lt(mod(n\\,10)\\,7)',setpts=N/FRAME_RATE/TB", X264, "mp4"),
    (
        "combined: CRF 28 + crop 90% + 0.5x + brightness 1.2",
        "crop=trunc(iw*0.45)*2:trunc(ih*0.45)*2,scale=trunc(iw/4)*2:trunc(ih/4)*2,lutrgb=r=val*1.2:g=val*1.2:b=val*1.2",
        &["-c:v", "libx264", "-crf", "28", "-pix_fmt", "yuv420p"],
        "mp4",
    ),
];

/// The formats the real negatives are written in (an unmarked clip each).
const NEGATIVE_FORMATS: &[usize] = &[1, 4, 5, 6];

fn ffmpeg(args: &[&str]) -> Result<()> {
    let out = Command::new("ffmpeg")
        .env("SVT_LOG", "1")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .context("running ffmpeg")?;
    ensure!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// `attack` applied to `input`, written to `dir`; returns the file's bytes.
pub fn attack(input: &Path, dir: &Path, name: &str, a: &Attack) -> Result<Vec<u8>> {
    let (_, filter, codec, ext) = a;
    if codec.is_empty() {
        return Ok(std::fs::read(input)?);
    }
    let out = dir.join(format!("{name}.{ext}"));
    let mut args = vec!["-i", input.to_str().context("path")?, "-vf", filter];
    args.extend_from_slice(codec);
    args.push(out.to_str().context("path")?);
    ffmpeg(&args)?;
    Ok(std::fs::read(&out)?)
}

/// The photographs in `dir` (PNG/JPEG, both sides ≥ 256 px), sorted by name, as RGB.
pub fn photos(dir: &Path) -> Result<Vec<(String, image::RgbImage)>> {
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if !matches!(ext.as_str(), "png" | "jpg" | "jpeg") {
            continue;
        }
        let Ok(img) = image::open(&p) else { continue };
        if img.width() >= 256 && img.height() >= 256 {
            out.push((p.file_stem().unwrap_or_default().to_string_lossy().to_string(), img.to_rgb8()));
        }
    }
    ensure!(!out.is_empty(), "no photographs of at least 256x256 in {}", dir.display());
    Ok(out)
}

/// Clip `i` of `photo`: `frames` frames of `w`×`h`, a window of the video's aspect panning across the photo
/// (direction and speed from `i`) while zooming in or out by 15%.
pub fn clip(photo: &image::RgbImage, w: usize, h: usize, frames: usize, i: usize) -> Vec<Vec<u8>> {
    let (pw, ph) = (f64::from(photo.width()), f64::from(photo.height()));
    let aspect = w as f64 / h as f64;
    let (bw, bh) = if pw / ph > aspect { (ph * aspect, ph) } else { (pw, pw / aspect) };
    let (dir, zoom_in) = (if i.is_multiple_of(2) { 1.0 } else { -1.0 }, i % 4 < 2);
    (0..frames)
        .map(|t| {
            let s = t as f64 / (frames.max(2) - 1) as f64;
            let z = if zoom_in { 1.0 + 0.15 * s } else { 1.15 - 0.15 * s };
            let (cw, ch) = (bw / z, bh / z);
            let cx = pw / 2.0 + dir * (pw - cw) / 2.0 * 0.8 * (2.0 * s - 1.0);
            let cy = ph / 2.0 + (ph - ch) / 2.0 * 0.5 * (2.0 * s - 1.0) * if i.is_multiple_of(3) { 1.0 } else { -1.0 };
            let (x0, y0) =
                ((cx - cw / 2.0).clamp(0.0, (pw - cw).max(0.0)), (cy - ch / 2.0).clamp(0.0, (ph - ch).max(0.0)));
            let crop = image::imageops::crop_imm(photo, x0 as u32, y0 as u32, cw as u32, ch as u32).to_image();
            image::imageops::resize(&crop, w as u32, h as u32, image::imageops::FilterType::Triangle).into_raw()
        })
        .collect()
}

/// Writes RGB frames losslessly (libx264rgb, QP 0) and returns the file's bytes.
fn lossless(frames: &[Vec<u8>], w: usize, h: usize, fps: u32, out: &Path) -> Result<Vec<u8>> {
    let size = format!("{w}x{h}");
    let rate = fps.to_string();
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &size, "-r", &rate, "-i", "-"])
        .args(["-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast"])
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .context("running ffmpeg")?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
        for f in frames {
            stdin.write_all(f)?;
        }
    }
    ensure!(child.wait()?.success(), "ffmpeg lossless encode");
    Ok(std::fs::read(out)?)
}

/// Per attack: the marked videos' z and p-values and how their payloads decoded.
pub struct Tally {
    /// z per attack, one per video.
    pub z: Vec<Vec<f64>>,
    /// p-values per attack, one per video.
    pub p: Vec<Vec<f64>>,
    right: Vec<usize>,
    wrong: Vec<usize>,
}

impl Tally {
    /// An empty tally over [`ATTACKS`].
    pub fn new() -> Self {
        let n = ATTACKS.len();
        Self { z: vec![Vec::new(); n], p: vec![Vec::new(); n], right: vec![0; n], wrong: vec![0; n] }
    }

    /// Records attack `a`'s detection on a video marked with `payload`.
    pub fn record(&mut self, a: usize, d: &Detection, payload: Payload) {
        match d.payload {
            Some(q) if q == payload => self.right[a] += 1,
            Some(_) => self.wrong[a] += 1,
            None => {}
        }
        self.z[a].push(d.z);
        self.p[a].push(d.p_value);
    }

    /// The Markdown table of the `selected` attacks over `n` marked videos.
    pub fn table(&self, selected: &[usize], n: usize) -> String {
        let mut t = String::from(
            "| attack | TPR at p ≤ 1e-3 | TPR at p ≤ 1e-6 | median z | min z | payload decoded (wrong) |\n\
             |---|---|---|---|---|---|\n",
        );
        for (a, (name, ..)) in ATTACKS.iter().enumerate().filter(|(a, _)| selected.contains(a)) {
            let tpr = |alpha: f64| self.p[a].iter().filter(|&&q| q <= alpha).count() as f64 / n.max(1) as f64;
            t.push_str(&format!(
                "| {name} | {:.3} | {:.3} | {:.2} | {:.2} | {:.3} ({}) |\n",
                tpr(1e-3),
                tpr(1e-6),
                median(self.z[a].clone()),
                self.z[a].iter().copied().fold(f64::INFINITY, f64::min),
                self.right[a] as f64 / n.max(1) as f64,
                self.wrong[a]
            ));
        }
        t
    }
}

/// The median (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs the evaluation; see the module docs for the arguments.
pub fn run(args: &[String]) -> Result<()> {
    let photos_dir: PathBuf = arg::<String>(args, "--photos", String::new()).into();
    ensure!(!photos_dir.as_os_str().is_empty(), "--photos DIR is required (e.g. scikit-image's data directory)");
    let sizes: String = arg(args, "--sizes", "480x270,854x480".to_string());
    let clips: usize = arg(args, "--clips", 20);
    let extra_negatives: usize = arg(args, "--negatives", 0);
    // `--attacks 0,18`: only those rows of ATTACKS (by index), for research runs.
    let selected: Vec<usize> = match args.iter().position(|a| a == "--attacks").and_then(|i| args.get(i + 1)) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>().context("--attacks: e.g. 0,18")?,
        None => (0..ATTACKS.len()).collect(),
    };
    let frames: usize = arg(args, "--frames", 48);
    let fps: u32 = arg(args, "--fps", 24);
    let null_trials: usize = arg(args, "--null-trials", 1_000_000);
    // `--psnr-db X`: mark at this PSNR instead of the default (research on the strength).
    let params = Params { psnr_db: arg(args, "--psnr-db", Params::default().psnr_db), ..Params::default() };
    let out_path: Option<String> = args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).cloned();
    let photos = photos(&photos_dir)?;
    let key = Key::derive(b"vidmesh watermark evaluation key");
    let reference = Reference::new(&key);
    let work = tempfile::tempdir()?;
    let mut report = format!(
        "## Measured: natural clips ({} photographs from {}, panned and zoomed), {frames} frames at {fps} fps\n\n\
         Reproduce: `cargo run --release -p vidmesh-bench --bin watermark_eval -- --natural --photos DIR --sizes \
         {sizes} --clips {clips} --negatives {extra_negatives} --frames {frames} --fps {fps} --null-trials \
         {null_trials}` (DIR from scripts/eval-photos.sh).\n",
        photos.len(),
        photos_dir.display()
    );
    let mut all_suspects: Vec<Suspect> = Vec::new();
    let t0 = Instant::now();
    for size in sizes.split(',') {
        let (w, h) = size.split_once('x').context("--sizes: WxH,WxH")?;
        let (w, h): (usize, usize) = (w.parse()?, h.parse()?);
        let mut tally = Tally::new();
        let (mut luma_psnr, mut negatives) = (Vec::new(), Vec::new());
        for i in 0..clips + extra_negatives {
            let (name, photo) = &photos[i % photos.len()];
            let clean = clip(photo, w, h, frames, i / photos.len() * 7 + i);
            let dir = work.path().join(format!("{size}-{i}"));
            std::fs::create_dir_all(&dir)?;
            let source_path = dir.join("source.mp4");
            let source = lossless(&clean, w, h, fps, &source_path)?;
            let negatives_only = i >= clips;
            let payload = Payload { generator: 7, tag: Payload::tag_of(&format!("natural {size} {i}")) };
            let marked_path = dir.join("marked.mp4");
            if !negatives_only {
                let (marked, m) = vidmesh_cli::mark::watermark(&source, &key, params, payload, None)?;
                luma_psnr.push(m.luma_psnr_db);
                std::fs::write(&marked_path, &marked)?;
            }
            for (a, attack_def) in ATTACKS.iter().enumerate().filter(|(a, _)| !negatives_only && selected.contains(a)) {
                let bytes = attack(&marked_path, &dir, &format!("a{a}"), attack_def)?;
                let video = vidmesh_video::decode_video(&bytes)?;
                let suspect = Suspect::sampled(&video, &Budget::default());
                tally.record(a, &suspect.detect(&reference), payload);
                all_suspects.push(suspect);
            }
            for &f in NEGATIVE_FORMATS {
                let bytes = attack(&source_path, &dir, &format!("n{f}"), &ATTACKS[f])?;
                let suspect = Suspect::sampled(&vidmesh_video::decode_video(&bytes)?, &Budget::default());
                let d = suspect.detect(&reference);
                negatives.push((
                    format!("{name} {size} #{i} as {}", ATTACKS[f].0),
                    d.z,
                    d.p_value,
                    d.payload.is_some(),
                ));
                all_suspects.push(suspect);
            }
            let zs: Vec<String> =
                tally.z.iter().map(|v| format!("{:.1}", v.last().copied().unwrap_or(f64::NAN))).collect();
            eprintln!(
                "{size} clip {}/{} ({name}): {:?}; z by attack: {}",
                i + 1,
                clips + extra_negatives,
                t0.elapsed(),
                zs.join(" ")
            );
        }
        report.push_str(&format!(
            "\n### {w}×{h}: {clips} marked clips, {} unmarked\n\nWatermark luma PSNR (before encoding): min {:.2} / median {:.2} dB.\n\n{}",
            clips + extra_negatives,
            luma_psnr.iter().copied().fold(f64::INFINITY, f64::min),
            median(luma_psnr.clone()),
            tally.table(&selected, clips)
        ));
        let worst = negatives.iter().max_by(|a, b| a.1.total_cmp(&b.1)).context("no negatives")?;
        report.push_str(&format!(
            "\nReal negatives with the true key ({} unmarked clips as H.264, H.265, VP9 and AV1): {} at p ≤ 1e-3, {} at \
             p ≤ 1e-6; highest z {:.2} ({}); payloads decoded from them: {}.\n",
            negatives.len(),
            negatives.iter().filter(|n| n.2 <= 1e-3).count(),
            negatives.iter().filter(|n| n.2 <= 1e-6).count(),
            worst.1,
            worst.0,
            negatives.iter().filter(|n| n.3).count()
        ));
    }
    // Key-shuffle null: random wrong keys against every suspect (attacked positives and negatives).
    let per = null_trials.div_ceil(all_suspects.len().max(1));
    let start = Instant::now();
    let (mut trials, mut hits3, mut hits6, mut max_z) = (0usize, 0usize, 0usize, f64::NEG_INFINITY);
    for (s_i, s) in all_suspects.iter().enumerate() {
        for k in 0..per {
            let d = s.detect(&s.reference(&Key::derive(format!("natural key-shuffle {s_i} {k}").as_bytes())));
            trials += 1;
            hits3 += usize::from(d.p_value <= 1e-3);
            hits6 += usize::from(d.p_value <= 1e-6);
            max_z = max_z.max(d.z);
        }
    }
    report.push_str(&format!(
        "\nKey-shuffle null ({trials} trials: {per} random wrong keys against each of {} suspects): {hits3} at p ≤ 1e-3 \
         (rate {:.2e}), {hits6} at p ≤ 1e-6; max z {max_z:.2}; {:.1} µs per trial.\n",
        all_suspects.len(),
        hits3 as f64 / trials.max(1) as f64,
        start.elapsed().as_secs_f64() * 1e6 / trials.max(1) as f64
    ));
    print!("{report}");
    if let Some(path) = out_path {
        std::fs::write(&path, &report).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}
