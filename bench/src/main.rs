//! vidmesh-bench: measures the first two stages on this machine with the bundled model and prints a markdown
//! report (docs/benchmarks.md is this output).
//!
//!   cargo run --release -p vidmesh-bench -- [--quick] [--cuda] [--only dit|graphs|denoiser|text-encoder|decoder|classifier] [--compare-graph PATH] [--out docs/benchmarks.md]
//!
//! 1. DiT latency per scheduler step for 1/2/4/8 requests in one call (CFG: two rows per request), straight on
//!    the ONNX session.
//! 2. Denoiser throughput over gRPC: N concurrent requests at the default size, with step-level batching
//!    (max_batch 8) and without (max_batch 1), and batched with the device-resident loop (IO binding), with
//!    the latent bytes it moved between host and device per DiT call.
//! 3. Text-encoder latency over gRPC for one prompt per call: cache hits vs misses (cache disabled).
//! 4. Decoder peak memory by frame count (a child process per size).
//! 5. Classifier time per clip, in process, from small to 640x360 clips.

mod graphs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vidmesh_denoiser::engine::dit::{Dit, DitBatch};
use vidmesh_model::{Bundle, Onnx, OnnxConfig, Part};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, denoise_event::Event as Ev, denoiser_client::DenoiserClient};
use vidmesh_proto::text_encoder::v1::{EncodeRequest, text_encoder_client::TextEncoderClient};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::stage::Options;

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/vidmesh-tiny")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn dit_latency(onnx: &Onnx, iters: usize, out: &mut String) -> Result<()> {
    let b = Bundle::open(&bundle_dir(), &[Part::Dit])?;
    let m = &b.manifest;
    let session = onnx.session(&b.path(&m.dit.component.file))?;
    let mut dit = Dit::new(Some(session), m.dit.names.clone(), m.dit.extra_inputs.clone(), None);
    let shape = m.latent_shape(m.video.default_frames, m.video.default_height, m.video.default_width);
    let n: usize = shape.iter().product();
    let (tokens, hidden) = (m.text_encoder.max_tokens, m.text_encoder.hidden_size);
    out.push_str(&format!(
        "\n## DiT step latency ({}x{}x{} video, latents {shape:?}, CFG = 2 rows per request)\n\n",
        m.video.default_frames, m.video.default_height, m.video.default_width
    ));
    out.push_str("| requests per call | rows | median ms | p90 ms | ms per request-step |\n|---|---|---|---|---|\n");
    for requests in [1usize, 2, 4, 8] {
        let rows = 2 * requests;
        let batch = || DitBatch {
            rows,
            latent_shape: shape,
            latents: vidmesh_denoiser::engine::noise::gaussian(7, rows * n),
            timesteps: vec![500.0; rows],
            tokens,
            hidden,
            states: vec![0.01; rows * tokens * hidden],
            mask: (0..rows * tokens).map(|i| i64::from(i % tokens < 12)).collect(),
            fps: vec![m.video.default_fps as f32; rows],
            guidance: vec![m.scheduler.guidance; rows],
            pooled: vec![0.01; rows * m.text_encoder_2.as_ref().map_or(0, |t| t.pooled_size)],
        };
        for _ in 0..3 {
            dit.run(batch()).map_err(anyhow::Error::msg)?;
        }
        let mut t: Vec<Duration> = (0..iters)
            .map(|_| {
                let b = batch();
                let s = Instant::now();
                dit.run(b).map(|_| s.elapsed())
            })
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        t.sort();
        let med = percentile(&t, 0.5);
        out.push_str(&format!(
            "| {requests} | {rows} | {} | {} | {} |\n",
            ms(med),
            ms(percentile(&t, 0.9)),
            ms(med / requests as u32)
        ));
    }
    Ok(())
}

async fn connect(addr: std::net::SocketAddr) -> Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?.connect().await?)
}

async fn denoiser_throughput(
    env: &HashMap<String, String>,
    onnx: &OnnxConfig,
    requests: usize,
    out: &mut String,
) -> Result<()> {
    out.push_str(&format!(
        "\n## Denoiser throughput over gRPC ({requests} concurrent requests, 16x64x64, 30 steps, CFG 5)\n\n"
    ));
    out.push_str(
        "| step-level batching | IO binding | wall s | requests/s | mean requests per DiT call | latent bytes moved per \
         DiT call |\n|---|---|---|---|---|---|\n",
    );
    let states = TensorF32::new(vec![12, 384], vec![0.01; 12 * 384]).to_proto();
    use vidmesh_denoiser::config::IoBinding;
    // Request 0's final latents per row: every row must produce the same video.
    let mut first: Vec<Vec<f32>> = Vec::new();
    for (max_batch, io) in [(1usize, IoBinding::Off), (8, IoBinding::Off), (8, IoBinding::On)] {
        let mut config = vidmesh_denoiser::Config::default();
        config.model.bundle = bundle_dir().display().to_string();
        config.batching.max_batch = max_batch;
        config.onnxruntime = onnx.clone();
        config.io_binding = io;
        let registry = prometheus::Registry::new();
        let shutdown = CancellationToken::new();
        let opts = Options { registry: registry.clone(), ..Options::with_env(env.clone()) };
        let (addr, task) = vidmesh_testmesh::serve_stage::<vidmesh_denoiser::Denoiser>(config, opts, &shutdown)
            .await
            .map_err(anyhow::Error::msg)?;
        let channel = connect(addr).await?;
        let metric = |name: &str| vidmesh_runtime::metrics::value(&registry, name).unwrap_or(0.0);
        let (calls_before, bytes_before) = (metric("denoiser_batch_requests"), metric("denoiser_transfer_bytes_total"));
        let start = Instant::now();
        let runs = (0..requests).map(|k| {
            let mut client = DenoiserClient::new(channel.clone());
            let req = DenoiseRequest {
                prompt_states: Some(states.clone()),
                negative_states: Some(states.clone()),
                seed: k as u64,
                ..Default::default()
            };
            async move {
                let mut s = client.denoise(req).await?.into_inner();
                let (mut done, mut latents) = (false, None);
                let mut asm = vidmesh_runtime::tensor::Assembler::new("latents");
                while let Some(ev) = s.message().await? {
                    done |= matches!(ev.event, Some(Ev::Completed(_)));
                    if let Some(Ev::Latents(chunk)) = ev.event
                        && let Some(t) = asm.push(chunk).map_err(|e| anyhow::anyhow!("{e}"))?
                    {
                        latents = Some(t.data);
                    }
                }
                anyhow::ensure!(done, "stream ended without completion");
                latents.context("no latents")
            }
        });
        let results = futures::future::try_join_all(runs).await?;
        first.push(results[0].clone());
        let wall = start.elapsed();
        let calls = metric("denoiser_batch_requests") - calls_before;
        let bytes = metric("denoiser_transfer_bytes_total") - bytes_before;
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} |\n",
            if max_batch > 1 { format!("on (max_batch {max_batch})") } else { "off (max_batch 1)".into() },
            if io == IoBinding::On { "on" } else { "off" },
            wall.as_secs_f64(),
            requests as f64 / wall.as_secs_f64(),
            (requests * 30) as f64 / calls,
            if io == IoBinding::On { format!("{:.0}", bytes / calls) } else { "all (host loop)".into() }
        ));
        shutdown.cancel();
        task.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    out.push_str(&format!(
        "\nRequest 0's final latents, max |difference| from the unbatched host loop's: batched {:.2e}, batched with \
         IO binding {:.2e}.\n",
        diff(&first[0], &first[1]),
        diff(&first[0], &first[2])
    ));
    Ok(())
}

async fn text_encoder_latency(env: &HashMap<String, String>, iters: usize, out: &mut String) -> Result<()> {
    out.push_str("\n## Text-encoder latency over gRPC (one prompt per call, sequential)\n\n");
    out.push_str("| cache | median ms | p90 ms |\n|---|---|---|\n");
    for (label, capacity) in [("miss (cache disabled)", 0usize), ("hit", 4096)] {
        let mut config = vidmesh_text_encoder::Config::default();
        config.model.bundle = bundle_dir().display().to_string();
        config.cache_capacity = capacity;
        let shutdown = CancellationToken::new();
        let opts = Options { registry: prometheus::Registry::new(), ..Options::with_env(env.clone()) };
        let (addr, task) = vidmesh_testmesh::serve_stage::<vidmesh_text_encoder::TextEncoder>(config, opts, &shutdown)
            .await
            .map_err(anyhow::Error::msg)?;
        let channel = connect(addr).await?;
        let mut client = TextEncoderClient::new(channel);
        let prompt = "a large blue square moving up and to the right quickly on a striped white background";
        let req = || EncodeRequest { prompts: vec![prompt.to_string()], ..Default::default() };
        client.encode(req()).await?;
        let mut t = Vec::with_capacity(iters);
        for _ in 0..iters {
            let s = Instant::now();
            let resp = client.encode(req()).await?.into_inner();
            t.push(s.elapsed());
            anyhow::ensure!(resp.encodings[0].cached == (capacity > 0), "unexpected cache outcome");
        }
        t.sort();
        out.push_str(&format!("| {label} | {} | {} |\n", ms(percentile(&t, 0.5)), ms(percentile(&t, 0.9))));
        shutdown.cancel();
        task.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Classifier examination time per clip (decode + watermark + C2PA + passive), in process, on watermarked MP4s of
/// synthetic moving content at the bundle's sizes and at larger ones.
async fn classifier_latency(env: &HashMap<String, String>, iters: usize, out: &mut String) -> Result<()> {
    out.push_str("\n## Classifier: examine one clip (decode + watermark + C2PA + passive detector), in process\n\n");
    out.push_str("| clip | frames examined | median ms | max ms | watermark z |\n|---|---|---|---|---|\n");
    let key_hex = "5a".repeat(32);
    let mut config = vidmesh_classifier::Config::default();
    config.watermark.key_hex.clone_from(&key_hex);
    config.model.bundle = bundle_dir().display().to_string();
    let store = tempfile::tempdir()?;
    config.storage.local_root = store.path().display().to_string();
    let passive = tokio::task::block_in_place(|| vidmesh_classifier::engine::load_passive(&config, env))?;
    let classifier = vidmesh_classifier::engine::Classifier::load(&config, passive).await?;
    let key = vidmesh_watermark::Key(hex::decode(&key_hex)?.try_into().map_err(|_| anyhow::anyhow!("key"))?);
    // The last: a 5-second clip at 24 fps and 854x480.
    for (w, h, frames) in [(64usize, 64usize, 16usize), (96, 64, 32), (256, 256, 64), (640, 360, 96), (854, 480, 120)] {
        let mut video = vidmesh_video::Video {
            width: w,
            height: h,
            fps: if frames == 120 { 24.0 } else { 8.0 },
            frames: (0..frames)
                .map(|t| {
                    (0..w * h)
                        .flat_map(|k| {
                            let (x, y) = (k % w, k / w);
                            let inside = (x + w - (t * 2) % w) % w < w / 4 && (h / 3..h / 2).contains(&y);
                            let bg = 60 + ((x * 7 + y * 13) % 23) as u8 * 3;
                            if inside { [200, 40, 40] } else { [bg, bg / 2 + 20, 90] }
                        })
                        .collect()
                })
                .collect(),
        };
        vidmesh_watermark::embed(&key, &mut video, &vidmesh_watermark::Params::default());
        let mp4 = vidmesh_video::encode_mp4(&video, &vidmesh_video::EncodeOptions::default())?;
        let mut t = Vec::with_capacity(iters);
        let mut last = None;
        for _ in 0..iters {
            let s = Instant::now();
            last = Some(tokio::task::block_in_place(|| classifier.examine(&mp4))?);
            t.push(s.elapsed());
        }
        t.sort();
        let r = last.context("no iterations")?;
        out.push_str(&format!(
            "| {w}x{h}, {frames} frames ({} decoded) | {} | {} | {} | {:.1} |\n",
            r.frames,
            vidmesh_watermark::Budget { max_frames: config.max_frames, max_pixels: config.max_pixels }
                .examined(w, h, frames),
            ms(percentile(&t, 0.5)),
            ms(t[t.len() - 1]),
            r.watermark.z
        ));
    }
    Ok(())
}

/// Runs the decoder_memory binary (next to this one) once per size: peak RSS is a per-process high-water mark.
fn decoder_memory(out: &mut String) -> Result<()> {
    let exe = std::env::current_exe()?.with_file_name("decoder_memory");
    let at = |name: &str| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(name);
        vec!["1".into(), dir.display().to_string(), "256x256".into()]
    };
    // One bundle per decode mode, each at two or more frame counts.
    let runs: Vec<(&str, Vec<String>, Vec<usize>)> = vec![
        ("vidmesh-tiny: independent VAE in chunks of 2 latent frames, 64x64", vec![], vec![16, 64, 256]),
        (
            "wan2.1-tiny: stateful causal VAE, one latent frame at a time with its feature cache, 256x256",
            at("wan2.1-tiny"),
            vec![17, 65, 257],
        ),
        (
            "cogvideox-tiny: stateful causal VAE, 2 latent frames per run with its conv caches, 256x256",
            at("cogvideox-tiny"),
            vec![17, 49],
        ),
        ("ltx-tiny: whole decode (LTX-Video's VAE is not causal), 256x256", at("ltx-tiny"), vec![17, 65]),
        (
            "hunyuan-tiny: windowed decode (5 latent frames per window, stride 3, 4 frames blended), 256x256",
            at("hunyuan-tiny"),
            vec![17, 65],
        ),
    ];
    for (title, extra, sizes) in runs {
        out.push_str(&format!("\n## Decoder peak memory ({title} → MP4 → local storage)\n\n"));
        out.push_str("| frames | peak RSS MiB | after model load MiB |\n|---|---|---|\n");
        for frames in sizes {
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg(frames.to_string());
            if extra.is_empty() {
                cmd.arg("2");
            }
            let o = cmd.args(&extra).output().context("running decoder_memory")?;
            anyhow::ensure!(o.status.success(), "decoder_memory failed: {}", String::from_utf8_lossy(&o.stderr));
            let text = String::from_utf8_lossy(&o.stdout);
            let field = |k: &str| -> Result<f64> {
                let v = text.split_whitespace().find_map(|w| w.strip_prefix(k)).context("decoder_memory output")?;
                Ok(v.parse::<f64>()? / 1024.0)
            };
            out.push_str(&format!(
                "| {frames} | {:.1} | {:.1} |\n",
                field("peak_rss_kib=")?,
                field("after_load_kib=")?
            ));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out_path = args.iter().position(|a| a == "--out").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let env: HashMap<String, String> = std::env::vars().collect();
    // `--cuda`: every session on the CUDA execution provider (the onnxruntime-gpu library in ORT_DYLIB_PATH).
    let onnx_config = OnnxConfig {
        execution_provider: if args.iter().any(|a| a == "--cuda") {
            vidmesh_model::ExecutionProvider::Cuda
        } else {
            vidmesh_model::ExecutionProvider::Cpu
        },
        ..OnnxConfig::default()
    };
    let onnx = Onnx::init(&onnx_config, &env).context("loading ONNX Runtime")?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut out = format!(
        "# vidmesh benchmarks\n\nMachine: {cores} CPU cores, ONNX Runtime {:?} provider, bundle vidmesh-tiny. \
         Reproduce: `cargo run --release -p vidmesh-bench -- --out docs/benchmarks.md` (ORT_DYLIB_PATH from \
         scripts/fetch-onnxruntime.sh). Machines of this kind differ by up to 2x from one to the next: compare rows \
         within one run.\n",
        onnx_config.execution_provider
    );
    // `--only NAME` runs one section: dit, denoiser, text-encoder, decoder or classifier.
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("dit") {
        dit_latency(&onnx, if quick { 5 } else { 50 }, &mut out)?;
    }
    if run("graphs") {
        let compare = args.iter().position(|a| a == "--compare-graph").and_then(|i| args.get(i + 1));
        graphs::dit_graphs(
            &onnx,
            &bundle_dir(),
            if quick { 5 } else { 50 },
            compare.map(|s| std::path::Path::new(s.as_str())),
            &mut out,
        )?;
    }
    if run("denoiser") {
        denoiser_throughput(&env, &onnx_config, if quick { 4 } else { 64 }, &mut out).await?;
    }
    if run("text-encoder") {
        text_encoder_latency(&env, if quick { 20 } else { 200 }, &mut out).await?;
    }
    if run("decoder") {
        decoder_memory(&mut out)?;
    }
    if run("classifier") {
        classifier_latency(&env, if quick { 2 } else { 5 }, &mut out).await?;
    }
    print!("{out}");
    if let Some(p) = out_path {
        std::fs::write(&p, &out).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
