//! `vidmesh`: make a video from a prompt on this machine, check a video, list models, run services.
//!
//!   vidmesh generate "a red circle moving left" -o video.mp4 [--seconds 2] [--size 64x64] [--steps 30] [--seed 7]
//!                    [--image first.png | --video source.mp4 [--strength 0.6]]
//!   vidmesh extend video.mp4 "the circle keeps moving left" -o longer.mp4 [--seconds 2]
//!   vidmesh detect video.mp4
//!   vidmesh watermark any-video.mkv -o marked.mp4 [--tag 1234]
//!   vidmesh models
//!   vidmesh serve all | gateway | text-encoder | denoiser | decoder | classifier [CONFIG.toml]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use vidmesh_cli::local;
use vidmesh_cli::mesh::{Conditioning, Job, Mesh, Mode, Progress};
use vidmesh_runtime::{Stage, StageConfig, StartError};

#[derive(Parser)]
#[command(name = "vidmesh", version, about = "Serve and use text-to-video diffusion models")]
struct Cli {
    /// Model bundle directory (default: the bundled vidmesh-tiny).
    #[arg(long, global = true)]
    bundle: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What `generate` and `extend` both take.
#[derive(clap::Args)]
struct Make {
    /// Output: an MP4 file, or (generate) a directory (a path ending in `/`, or an existing directory) that receives
    /// lossless PNG frames `frame_0000.png`, … for comparing with another pipeline. Default: video.mp4
    /// (generate), extended.mp4 (extend).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Duration in seconds (extend: of the new segment; default: the bundle's default frame count).
    #[arg(long, conflicts_with = "frames")]
    seconds: Option<f64>,
    /// Exact frame count (e.g. 17 or 81 for 4k+1 models; extend: of the new segment); `vidmesh models` lists what
    /// the bundle accepts.
    #[arg(long)]
    frames: Option<u32>,
    /// Do not watermark the output (it is marked with this machine's key by default).
    #[arg(long)]
    no_watermark: bool,
    /// Denoising steps (default: the bundle's).
    #[arg(long, default_value_t = 0)]
    steps: u32,
    /// Noise seed (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Step caching: off, balanced or fast (default: the bundle's); `vidmesh models` lists the tiers it has.
    #[arg(long, default_value = "")]
    cache: String,
}

#[derive(Subcommand)]
enum Command {
    /// Make a video from a prompt with the whole mesh in this process (watermarked with this machine's key).
    Generate {
        /// What the video shows.
        prompt: String,
        #[command(flatten)]
        make: Make,
        /// WIDTHxHEIGHT, e.g. 64x64 or 96x64 (default: the bundle's default, or the reference's size when the
        /// bundle makes it).
        #[arg(long)]
        size: Option<String>,
        /// Classifier-free guidance scale (default: the bundle's).
        #[arg(long)]
        guidance: Option<f32>,
        /// What to steer away from.
        #[arg(long, default_value = "")]
        negative_prompt: String,
        /// Print where the time went: load, text encoding + first step, seconds per further denoising step
        /// (with CFG, one step = 2 DiT runs), decode.
        #[arg(long)]
        timings: bool,
        /// Image→video: this PNG, JPEG or WebP image is the first frame (scaled to cover the size, centre-cropped).
        #[arg(long, conflicts_with = "video")]
        image: Option<PathBuf>,
        /// Video→video: this video (MP4, MOV, MKV or WebM) re-made with the prompt (its length, unless --frames/--seconds ask less).
        #[arg(long)]
        video: Option<PathBuf>,
        /// With --video: how much of the denoising re-runs, in (0, 1] (default: the bundle's).
        #[arg(long, requires = "video")]
        strength: Option<f32>,
    },
    /// Continue a video: its last frames are pinned at the start of a new generation whose other frames are
    /// appended; the output is the whole, stitched video.
    Extend {
        /// The video to continue (MP4, MOV, MKV or WebM).
        video: PathBuf,
        /// What the continuation shows.
        prompt: String,
        #[command(flatten)]
        make: Make,
    },
    /// Was this video made by vidmesh? Watermark (this machine's key), C2PA and passive evidence.
    Detect {
        /// The video file (MP4, MOV, MKV or WebM; H.264, H.265, VP9, AV1, …).
        file: PathBuf,
    },
    /// Mark any video with this machine's watermark key (the decoder's embedder, with a payload) and write it as
    /// a C2PA-signed H.264 MP4 (same frames and frame rate; an odd width or height loses its last column/row).
    Watermark {
        /// The video to mark (MP4, MOV, MKV or WebM; H.264, H.265, VP9, AV1, …).
        input: PathBuf,
        /// Where the marked MP4 goes.
        #[arg(short, long)]
        output: PathBuf,
        /// The payload's 16-bit tag (default: from the SHA-256 of the input file).
        #[arg(long)]
        tag: Option<u16>,
        /// The payload's generator id, 0-255.
        #[arg(long, default_value_t = 0)]
        generator: u8,
    },
    /// The bundle's model: name, sizes, frame counts, defaults.
    Models,
    /// Run services in this process until SIGTERM/Ctrl-C: one named service with its config file (as its own binary
    /// does), or `all`: the gateway on 50050 (HTTP 8080, metrics 9094) and the stages on 50051-50054 (metrics
    /// 9090-9093) with defaults.
    Serve {
        /// all | gateway | text-encoder | denoiser | decoder | classifier
        service: String,
        /// TOML config for a single service (environment VIDMESH__… applies on top).
        config: Option<PathBuf>,
    },
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b) >> 1 // below 2^63: JSON- and shell-friendly
}

async fn generate(bundle: PathBuf, cmd: Command, env: HashMap<String, String>) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (prompt, make, size, guidance, negative_prompt, timings, cond, default_output) = match cmd {
        Command::Generate { prompt, make, size, guidance, negative_prompt, timings, image, video, strength } => {
            let cond = match (image, video) {
                (Some(p), _) => Some(Conditioning { mode: Mode::ImageToVideo, media: read(&p)?, strength: 0.0 }),
                (None, Some(p)) => {
                    Some(Conditioning { mode: Mode::Edit, media: read(&p)?, strength: strength.unwrap_or(0.0) })
                }
                (None, None) => None,
            };
            (prompt, make, size, guidance, negative_prompt, timings, cond, "video.mp4")
        }
        Command::Extend { video, prompt, make } => {
            let cond = Conditioning { mode: Mode::Extend, media: read(&video)?, strength: 0.0 };
            (prompt, make, None, None, String::new(), false, Some(cond), "extended.mp4")
        }
        _ => unreachable!(),
    };
    let Make { output, seconds, frames, no_watermark, steps, seed, cache } = make;
    vidmesh_model::check_prompt("the prompt", &prompt).map_err(anyhow::Error::msg)?;
    if !negative_prompt.is_empty() {
        vidmesh_model::check_text("--negative-prompt", &negative_prompt).map_err(anyhow::Error::msg)?;
    }
    let output = output.unwrap_or_else(|| PathBuf::from(default_output));
    let env = local::with_onnxruntime(env)?;
    let key = if no_watermark { String::new() } else { local::watermark_key(&env)? };
    let signing = local::signing_chain(&env)?;
    let store = tempfile::tempdir()?;
    let t0 = Instant::now();
    let mesh = Mesh::load(&bundle, store.path(), &key, Some(&signing), &env).await?;
    let loaded = Instant::now();
    let m = mesh.manifest();
    let v = &m.video;
    let reference =
        cond.as_ref().map(|c| vidmesh_video::media::probe(&c.media)).transpose().context("the reference")?;
    let (width, height) = match (size, reference) {
        // A reference of a size the model makes sets it.
        (None, Some(r)) if m.check_size(r.height, r.width).is_ok() => (r.width, r.height),
        (None, _) => (v.default_width, v.default_height),
        (Some(s), _) => {
            let (w, h) = s.split_once('x').context("--size must be WIDTHxHEIGHT, e.g. 64x64")?;
            (w.parse().context("--size width")?, h.parse().context("--size height")?)
        }
    };
    let fps = v.default_fps;
    let mode = cond.as_ref().map(|c| c.mode);
    let frames = match (frames, seconds) {
        (Some(f), _) => f,
        (None, None) if mode == Some(Mode::Edit) => 0,
        (None, None) => v.default_frames,
        (None, Some(s)) if mode == Some(Mode::Extend) => {
            let f = s * f64::from(fps);
            if !(f.is_finite() && f > 0.0 && f.fract() == 0.0) {
                bail!("--seconds {s} is not a whole number of frames at {fps} fps");
            }
            f as u32
        }
        (None, Some(s)) => m.frames_for_seconds(s, fps).map_err(anyhow::Error::msg)?,
    };
    let seed = seed.unwrap_or_else(random_seed);
    let job = Job { prompt, negative_prompt, seed, frames, height, width, fps, steps, guidance, cache };
    if cond.is_none() {
        mesh.check(&job)?;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")?.progress_chars("=> "));
    let mut steps_at = Vec::new(); // when each denoising step finished
    let mut show = |p: Progress| match p {
        Progress::Denoising { step, total, eta } => {
            steps_at.push(Instant::now());
            bar.set_prefix("denoising");
            bar.set_length(u64::from(total));
            bar.set_position(u64::from(step));
            bar.set_message(format!("step {step}/{total}, ETA {:.1}s", eta.as_secs_f64()));
        }
        Progress::Decoding { done, total } => {
            bar.set_prefix("decoding");
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{done}/{total} frames"));
        }
    };
    let as_frames = output.to_string_lossy().ends_with('/') || output.is_dir();
    if as_frames {
        let latents = mesh.conditioned_latents(&job, cond.as_ref(), &mut show).await?;
        let frames = mesh.decode_frames(&latents, job.seed, "cli", &mut show).await?;
        bar.finish_and_clear();
        if timings {
            print_timings(t0, loaded, &steps_at, "decode (VAE)");
        }
        std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
        let sc = mesh.manifest().vae.spatial_compression;
        let (w, h) = (latents.shape[3] * sc, latents.shape[2] * sc);
        for (i, f) in frames.iter().enumerate() {
            let path = output.join(format!("frame_{i:04}.png"));
            std::fs::write(&path, vidmesh_video::png_frame(w, h, f)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "wrote {} PNG frames {w}x{h} to {} (seed {seed}, {}) in {:.1}s",
            frames.len(),
            output.display(),
            if no_watermark { "not watermarked" } else { "watermarked" },
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let stored = mesh.generate(&job, cond.as_ref(), "cli", &mut show).await?;
    bar.finish_and_clear();
    if timings {
        print_timings(t0, loaded, &steps_at, "decode (VAE + watermark + MP4)");
    }
    let src = stored.video.uri.strip_prefix("file://").context("local storage URI")?;
    let mp4 = std::fs::read(src).context("reading the stored video")?;
    std::fs::write(&output, mp4).with_context(|| format!("writing {}", output.display()))?;
    let mark = stored.watermark_psnr.map_or("not watermarked".to_string(), |p| format!("watermarked at {p:.1} dB"));
    println!(
        "wrote {} ({} frames {}x{} @ {} fps, seed {seed}, {mark}) in {:.1}s",
        output.display(),
        stored.frames,
        stored.width,
        stored.height,
        stored.fps,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--timings`: load, text encoding + step 1, mean of the further steps, decode (from the last step to now).
fn print_timings(t0: Instant, loaded: Instant, steps_at: &[Instant], decode: &str) {
    let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    let now = Instant::now();
    println!("timings: load {:.3}s", secs(t0, loaded));
    if let (Some(&first), Some(&last)) = (steps_at.first(), steps_at.last()) {
        println!("timings: text encoding + denoising step 1 {:.3}s", secs(loaded, first));
        if steps_at.len() > 1 {
            let n = steps_at.len() - 1;
            println!("timings: denoising steps 2..{}: {:.3}s per step (mean)", n + 1, secs(first, last) / n as f64);
        }
        println!("timings: {decode} {:.3}s", secs(last, now));
    }
    println!("timings: total {:.3}s", secs(t0, now));
}

fn watermark(cmd: Command, env: &HashMap<String, String>) -> Result<()> {
    let Command::Watermark { input, output, tag, generator } = cmd else { unreachable!() };
    let source = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let key = vidmesh_watermark::Key::from_hex(&local::watermark_key(env)?)
        .context("the watermark key must be 64 hex digits")?;
    let signer = local::signing_chain(env)?.signer()?;
    let payload =
        vidmesh_watermark::Payload { generator, tag: tag.unwrap_or_else(|| vidmesh_cli::mark::default_tag(&source)) };
    let t0 = Instant::now();
    let (mp4, m) =
        vidmesh_cli::mark::watermark(&source, &key, vidmesh_watermark::Params::default(), payload, Some(&signer))?;
    std::fs::write(&output, &mp4).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} frames {}x{} at {:.3} fps from {} ({}), watermark PSNR {:.1} dB (luma {:.1} dB), payload generator {} tag {:04x}, \
         C2PA-signed ({:.1}s)",
        output.display(),
        m.frames,
        m.width,
        m.height,
        m.fps,
        input.display(),
        m.codec,
        m.psnr_db,
        m.luma_psnr_db,
        m.payload.generator,
        m.payload.tag,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn detect(bundle: PathBuf, file: PathBuf, env: HashMap<String, String>) -> Result<()> {
    let env = local::with_onnxruntime(env)?;
    let mut config = vidmesh_classifier::Config::default();
    config.watermark.key_hex = local::watermark_key(&env)?;
    config.c2pa.trust_anchors_path = local::signing_chain(&env)?.anchor.display().to_string();
    config.model.bundle = bundle.display().to_string();
    let store = tempfile::tempdir()?;
    config.storage.local_root = store.path().display().to_string();
    let passive = tokio::task::block_in_place(|| vidmesh_classifier::engine::load_passive(&config, &env))?;
    let classifier = vidmesh_classifier::engine::Classifier::load(&config, passive).await?;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let r = tokio::task::block_in_place(|| classifier.examine(&bytes))?;
    println!("{}: {:?} ({}x{}, {} frames, {:.0} ms)", file.display(), r.verdict, r.width, r.height, r.frames, {
        r.elapsed.as_secs_f64() * 1e3
    });
    for reason in &r.reasons {
        println!("  - {reason}");
    }
    Ok(())
}

fn models(bundle: PathBuf) -> Result<()> {
    let b = vidmesh_model::Bundle::manifest_only(&bundle)?;
    let m = &b.manifest;
    println!("{} {} ({})", m.model.name, m.model.version, bundle.display());
    println!("  {}", m.model.description);
    println!("  sizes (WxH): {}; frames: {} at {} fps", m.video.sizes_text().join(", "), m.frames_text(), m.video.fps);
    println!(
        "  defaults: {}x{}, {} frames, {} with {} steps, shift {}, guidance {}",
        m.video.default_width,
        m.video.default_height,
        m.video.default_frames,
        m.scheduler.kind,
        m.scheduler.steps,
        m.scheduler.shift,
        m.scheduler.guidance
    );
    println!("  step caching (--cache): {}", m.cache_tiers().join(", "));
    if let Some(d2) = &m.dit2 {
        println!(
            "  two transformers: the second from t < {:.0} on, with guidance {}",
            d2.boundary_ratio * 1000.0,
            d2.guidance_scale
        );
    }
    Ok(())
}

/// One line on stderr per service with the addresses it actually bound (ports may be 0 in the config):
/// `NAME grpc=ADDR http=ADDR metrics=ADDR`. Scripts and tests read it.
/// Loads `S`'s config (the `vidmesh` defaults laid over its own, then the file and the environment), binds and
/// announces its addresses, and spawns it.
async fn spawn<S: Stage>(
    defaults: &[(&str, String)],
    file: Option<&Path>,
    env: &HashMap<String, String>,
    shutdown: &CancellationToken,
    telemetry: &mut Option<vidmesh_runtime::telemetry::Telemetry>,
) -> Result<tokio::task::JoinHandle<Result<(), StartError>>> {
    let config: S::Config = vidmesh_runtime::config::load_over(defaults, file, env)?;
    if telemetry.is_none() {
        *telemetry = Some(vidmesh_runtime::telemetry::init(S::NAME, config.telemetry(), env)?);
    }
    let (listener, opts) = vidmesh_runtime::stage::bind::<S>(&config, env.clone()).await?;
    Ok(tokio::spawn(vidmesh_runtime::stage::serve_with::<S, _>(config, listener, shutdown.clone(), opts)))
}

async fn serve(bundle: PathBuf, service: &str, file: Option<PathBuf>, env: HashMap<String, String>) -> Result<()> {
    let env = local::with_onnxruntime(env)?;
    let shutdown = vidmesh_runtime::shutdown::on_signals();
    // Each service listens on its own default ports (vidmesh_runtime::stage::ports); the bundled model and this
    // machine's watermark key are the defaults here, below a config file and VIDMESH__* variables.
    let model = [("model.bundle", bundle.display().to_string())];
    let all = service == "all";
    if cfg!(not(feature = "gateway")) && (all || service == "gateway") {
        bail!(
            "this vidmesh was built without the gateway; build it with \
             `cargo build --release -p vidmesh-cli --features gateway` to serve {service}"
        );
    }
    if all && file.is_some() {
        bail!("serve all takes no config file (each service has its own); serve one service with its file instead");
    }
    let keyed = |env: &HashMap<String, String>| -> Result<Vec<(&str, String)>> {
        Ok(vec![model[0].clone(), ("watermark.key_hex", local::watermark_key(env)?)])
    };
    // One process, one tracer: `serve all` traces as "vidmesh" with default telemetry (OTEL_* variables apply);
    // a single service traces under its own name with its config's [telemetry].
    let mut telemetry = None;
    if all {
        let cfg = vidmesh_runtime::TelemetryConfig::default();
        telemetry = Some(vidmesh_runtime::telemetry::init("vidmesh", &cfg, &env)?);
    }
    let (file, t) = (file.as_deref(), &mut telemetry);
    let mut tasks = Vec::new();
    if all || service == "text-encoder" {
        tasks.push(spawn::<vidmesh_text_encoder::TextEncoder>(&model, file, &env, &shutdown, t).await?);
    }
    if all || service == "denoiser" {
        tasks.push(spawn::<vidmesh_denoiser::Denoiser>(&model, file, &env, &shutdown, t).await?);
    }
    if all || service == "decoder" {
        tasks.push(spawn::<vidmesh_decoder::Decoder>(&keyed(&env)?, file, &env, &shutdown, t).await?);
    }
    if all || service == "classifier" {
        tasks.push(spawn::<vidmesh_classifier::Classifier>(&keyed(&env)?, file, &env, &shutdown, t).await?);
    }
    #[cfg(feature = "gateway")]
    if all || service == "gateway" {
        tasks.push(spawn::<vidmesh_gateway::Gateway>(&model, file, &env, &shutdown, t).await?);
    }
    if tasks.is_empty() {
        bail!("unknown service {service:?}: all | gateway | text-encoder | denoiser | decoder | classifier");
    }
    let mut result = Ok(());
    for t in tasks {
        if let Err(e) = t.await? {
            // One stage failing stops the rest rather than leaving a half mesh up.
            shutdown.cancel();
            result = result.and(Err(e.into()));
        }
    }
    if let Some(t) = telemetry {
        t.shutdown();
    }
    result
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let bundle = cli.bundle.unwrap_or_else(local::default_bundle);
    match cli.command {
        cmd @ (Command::Generate { .. } | Command::Extend { .. }) => {
            generate(bundle, cmd, env).await?;
            // A one-shot command: its files are written and closed; skip tearing down the runtime's threads and
            // ONNX Runtime's pool (tens of milliseconds of a sub-second run).
            std::process::exit(0)
        }
        Command::Detect { file } => detect(bundle, file, env).await,
        cmd @ Command::Watermark { .. } => tokio::task::block_in_place(|| watermark(cmd, &env)),
        Command::Models => models(bundle),
        Command::Serve { service, config } => serve(bundle, &service, config, env).await,
    }
}
