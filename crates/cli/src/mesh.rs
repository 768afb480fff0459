//! The whole mesh in one process: the text-encoder, denoiser and decoder engines (the same code the services run,
//! without gRPC), driven the way the gateway drives the services.
//!
//! Invariants: requests are checked against the bundle's manifest before any compute (sizes, frame counts and fps
//! it supports), with messages that list what is supported; the engines load once and warm up.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vidmesh_decoder::engine::{Decoder, Generation, Stored};
use vidmesh_denoiser::engine::scheduler::Kind;
use vidmesh_denoiser::engine::{Denoiser, Event, Request, TextStates};
use vidmesh_model::{Ask, Limits, Manifest, Onnx, OnnxConfig, Plan, Task};
use vidmesh_runtime::TensorF32;
use vidmesh_text_encoder::engine::Encoder;
use vidmesh_video::Video;

/// One generation, as a user asks for it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from ("" = plain classifier-free guidance).
    pub negative_prompt: String,
    /// Noise seed.
    pub seed: u64,
    /// Frame count (one the bundle supports).
    pub frames: u32,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// Frames per second (one of the bundle's).
    pub fps: u32,
    /// Denoising steps (0 = the bundle's default).
    pub steps: u32,
    /// Guidance scale (None = the bundle's default).
    pub guidance: Option<f32>,
    /// Step-caching tier: off, balanced, fast ("" = the bundle's default).
    pub cache: String,
}

/// How a generation is conditioned besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The reference image is the first frame (keyframes).
    ImageToVideo,
    /// The reference video re-made with the prompt at a strength (SDEdit).
    Edit,
    /// The reference video continued (keyframes); the result is the stitched whole.
    Extend,
}

/// A reference image or video and what to do with it.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// What to do.
    pub mode: Mode,
    /// The media: PNG, JPEG or WebP image, or a video file (MP4, MOV, MKV or WebM; H.264, H.265, VP9, AV1).
    pub media: Vec<u8>,
    /// Edits: strength in (0, 1] (0 = the bundle's default).
    pub strength: f32,
}

/// Where a generation is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// A denoising step finished.
    Denoising {
        /// Steps done.
        step: u32,
        /// Steps in all.
        total: u32,
        /// Estimated time left for denoising.
        eta: Duration,
    },
    /// A chunk of frames was decoded.
    Decoding {
        /// Frames done.
        done: usize,
        /// Frames in all.
        total: usize,
    },
}

/// The loaded engines.
pub struct Mesh {
    encoder: Encoder,
    denoiser: Denoiser,
    decoder: Decoder,
}

impl Mesh {
    /// Loads and warms the three engines from `bundle`; videos go to local storage under `storage_root`;
    /// `watermark_key_hex` empty = no watermark; `signing` = the C2PA chain MP4s are signed with (None = not
    /// signed). `env` must hold ORT_DYLIB_PATH (see [`crate::local`]).
    pub async fn load(
        bundle: &Path,
        storage_root: &Path,
        watermark_key_hex: &str,
        signing: Option<&crate::local::SigningFiles>,
        env: &HashMap<String, String>,
    ) -> Result<Self> {
        let onnx = Onnx::init(&OnnxConfig::default(), env).context("loading ONNX Runtime")?;
        let registry = prometheus::Registry::new();
        let bundle = bundle.display().to_string();
        let mut te = vidmesh_text_encoder::Config::default();
        te.model.bundle.clone_from(&bundle);
        let mut dn = vidmesh_denoiser::Config::default();
        dn.model.bundle.clone_from(&bundle);
        dn.warm_up = false; // one process, one request: it pays the first-run costs once either way
        let mut dc = vidmesh_decoder::Config::default();
        dc.model.bundle = bundle;
        dc.storage.local_root = storage_root.display().to_string();
        dc.watermark.key_hex = watermark_key_hex.to_string();
        if let Some(s) = signing {
            let path = |p: &Path| p.display().to_string();
            (dc.c2pa.cert_chain_path, dc.c2pa.private_key_path) = (path(&s.chain), path(&s.key));
            dc.c2pa.trust_anchors_path = path(&s.anchor);
        }
        // The three engines load side by side (ONNX Runtime's graph optimisation is mostly single-threaded).
        let (o, r) = (onnx.clone(), registry.clone());
        let encoder = tokio::task::spawn_blocking(move || Encoder::load(&te, &o, &r));
        let (o, r) = (onnx.clone(), registry);
        let denoiser = tokio::task::spawn_blocking(move || Denoiser::load(&dn, &o, &r));
        let decoder = Decoder::load(&dc, &onnx).await?;
        let encoder = encoder.await.context("text-encoder load thread")??;
        let denoiser = denoiser.await.context("denoiser load thread")??;
        Ok(Self { encoder, denoiser, decoder })
    }

    /// Steps of requests with a step-caching tier so far: (DiT tail skipped, DiT tail run).
    pub fn cache_steps(&self) -> (u64, u64) {
        let c = &self.denoiser.metrics.cache_steps;
        (c.with_label_values(&["skipped"]).get(), c.with_label_values(&["run"]).get())
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.denoiser.manifest
    }

    /// Checks `job` against the bundle.
    pub fn check(&self, job: &Job) -> Result<()> {
        let m = self.manifest();
        m.check_frames(job.frames).map_err(anyhow::Error::msg)?;
        m.check_size(job.height, job.width).map_err(anyhow::Error::msg)?;
        m.check_fps(job.fps).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// The job resolved against the bundle by the rules every service uses.
    pub fn plan(&self, job: &Job) -> Result<Plan> {
        if !self.manifest().takes_negative() && !job.negative_prompt.is_empty() {
            bail!("{} takes no negative prompt; leave --negative-prompt out", self.manifest().model.name);
        }
        let ask = Ask {
            frames: job.frames,
            height: job.height,
            width: job.width,
            fps: job.fps,
            steps: job.steps,
            guidance: job.guidance,
            guidance_rescale: None,
            shift: None,
            scheduler: String::new(),
            cache: job.cache.clone(),
        };
        let dn = vidmesh_denoiser::Config::default();
        Plan::resolve(self.manifest(), &ask, &Limits { max_steps: dn.max_steps, max_guidance: dn.max_guidance })
            .map_err(anyhow::Error::msg)
    }

    /// Text → clean latents ([C, T', h, w], scaled).
    pub async fn latents(&self, job: &Job, progress: impl FnMut(Progress)) -> Result<TensorF32> {
        self.conditioned_latents(job, None, progress).await
    }

    /// Text and a reference → clean latents ([C, T', h, w], scaled) as the gateway's pipeline makes them: `job`'s
    /// frames are, for an edit, the output's (0 = the longest within the source), for an extension, the new
    /// segment's (the result is the stitched whole).
    pub async fn conditioned_latents(
        &self,
        job: &Job,
        cond: Option<&Conditioning>,
        mut progress: impl FnMut(Progress),
    ) -> Result<TensorF32> {
        let mut job = job.clone();
        let (keyframes, init, source) = match cond {
            None => (None, None, None),
            Some(c) => self.reference(&mut job, c).await?,
        };
        let plan = self.plan(&job)?;
        let enc = self.encoder.encode(&[job.prompt.clone(), job.negative_prompt.clone()], false).await?;
        let guidance = plan.guidance;
        let text = |i: usize| TextStates {
            states: enc[i].0.states.clone(),
            real_tokens: enc[i].0.ids.len(),
            pooled: enc[i].0.pooled.clone().unwrap_or_default(),
        };
        let mut req = Request {
            latent_shape: plan.latent_shape,
            prompt: text(0),
            negative: self.manifest().takes_negative().then(|| text(1)),
            seed: job.seed,
            steps: plan.steps,
            guidance,
            shift: plan.shift,
            kind: Kind::parse(&plan.scheduler).context("the bundle's scheduler kind")?,
            guidance_rescale: plan.guidance_rescale,
            cache: plan.cache,
            fps: plan.fps,
            init,
            keyframes: None,
            preview_every: 0,
            deadline: None,
        };
        let context = keyframes.as_ref().map_or(0, |(_, p): &(TensorF32, Vec<usize>)| p.len());
        if let Some((k, positions)) = keyframes {
            let clean = vidmesh_denoiser::engine::job::place(&k.data, &positions, req.latent_shape);
            let strength = self.manifest().conditioning.keyframe_strength;
            if strength < 1.0 && req.init.is_none() {
                req.init =
                    Some((vidmesh_denoiser::engine::job::spread(&clean, &positions, req.latent_shape), strength));
            }
            req.keyframes = Some((clean, positions));
        }
        let shape = req.latent_shape;
        let mut events = self.denoiser.submit(req)?;
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Progress { step, total, eta, .. } => progress(Progress::Denoising { step, total, eta }),
                Event::Done { latents, .. } => {
                    let out = TensorF32 { shape: shape.to_vec(), data: latents };
                    return Ok(match &source {
                        Some(src) => src.concat_frames(&out.frames(context, shape[1])),
                        None => out,
                    });
                }
                Event::Failed(e) => bail!("denoising failed: {e}"),
                Event::Preview { .. } => {}
            }
        }
        bail!("the denoiser stopped without a result")
    }

    /// Encodes `c`'s reference and adapts `job` (an edit's or extension's frames): (keyframes, init, an extension's
    /// source latents).
    #[allow(clippy::type_complexity)]
    async fn reference(
        &self,
        job: &mut Job,
        c: &Conditioning,
    ) -> Result<(Option<(TensorF32, Vec<usize>)>, Option<(Vec<f32>, f32)>, Option<TensorF32>)> {
        let m = self.manifest();
        let probe = vidmesh_video::media::probe(&c.media).context("the reference")?;
        let image = probe.kind == vidmesh_video::media::MediaKind::Image;
        let task = match c.mode {
            Mode::ImageToVideo => Task::ImageToVideo,
            Mode::Edit => Task::Edit,
            Mode::Extend => Task::Extend,
        };
        m.check_reference(task, image, (probe.width, probe.height), (job.width, job.height))
            .map_err(anyhow::Error::msg)?;
        let tc = m.vae.temporal_compression;
        let (frames, still) = match c.mode {
            Mode::ImageToVideo => (tc, true),
            Mode::Edit => {
                job.frames = m.edit_frames(probe.frames, job.frames).map_err(anyhow::Error::msg)?;
                (job.frames as usize, false)
            }
            Mode::Extend => ((probe.frames as usize / tc) * tc, false),
        };
        let ask = vidmesh_decoder::engine::encode::Ask {
            width: job.width as usize,
            height: job.height as usize,
            frames,
            still,
        };
        let (latents, _) = self.decoder.encode(c.media.clone().into(), ask, |_| {}).await?;
        Ok(match c.mode {
            Mode::ImageToVideo => (Some((latents, vec![0])), None, None),
            Mode::Edit => {
                let strength = if c.strength == 0.0 { m.conditioning.default_strength } else { c.strength };
                if !(strength > 0.0 && strength <= 1.0) {
                    bail!("--strength {strength} must be in (0, 1]");
                }
                (None, Some((latents.data, strength)), None)
            }
            Mode::Extend => {
                let ext = m.extension(probe.frames, job.frames).map_err(anyhow::Error::msg)?;
                job.frames = ext.window;
                let (t, ctx) = (latents.shape[1], (ext.context as usize) / tc);
                (Some((latents.frames(t - ctx, t), (0..ctx).collect())), None, Some(latents))
            }
        })
    }

    /// Latents → 8-bit frames, watermarked for `job_id` when this mesh marks (no codec: lossless); `seed` is the
    /// job's (for decoders that mix in noise).
    pub async fn decode_frames(
        &self,
        latents: &TensorF32,
        seed: u64,
        job_id: &str,
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<Vec<u8>>> {
        let marker = self.decoder.marker(job_id);
        let (frames, sc) = (self.manifest().vae.frames_of(latents.shape[1]), self.manifest().vae.spatial_compression);
        let (width, height) = (latents.shape[3] * sc, latents.shape[2] * sc);
        let mut out = Vec::with_capacity(frames);
        let sink = |i, mut f: Vec<u8>| {
            if let Some(m) = &marker {
                m.embed_frame(&mut f, width, height, i, frames);
            }
            out.push(f);
            Ok(())
        };
        let progress = |done, total| progress(Progress::Decoding { done, total });
        self.decoder.decode_frames(latents, seed, sink, progress).await?;
        Ok(out)
    }

    /// Text → clean 8-bit frames (no watermark, no codec): for evaluations.
    pub async fn frames(&self, job: &Job) -> Result<Video> {
        let latents = self.latents(job, |_| {}).await?;
        let mut frames = Vec::new();
        let sink = |_, f| {
            frames.push(f);
            Ok(())
        };
        let (_, height, width) = self.decoder.decode_frames(&latents, job.seed, sink, |_, _| {}).await?;
        Ok(Video { width, height, fps: f64::from(job.fps), frames })
    }

    /// Text → watermarked MP4 + thumbnail in storage under `prefix`.
    pub async fn generate(
        &self,
        job: &Job,
        cond: Option<&Conditioning>,
        prefix: &str,
        mut progress: impl FnMut(Progress),
    ) -> Result<Stored> {
        let latents = self.conditioned_latents(job, cond, &mut progress).await?;
        let parameters = serde_json::json!({
            "seed": job.seed, "frames": job.frames, "height": job.height, "width": job.width, "fps": job.fps,
            "steps": job.steps, "guidance": job.guidance,
        });
        let prompt_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(job.prompt.as_bytes()));
        let generation = Generation { prompt_sha256, parameters, job_id: prefix.to_owned(), seed: job.seed };
        let stored = self
            .decoder
            .decode(&latents, job.fps, prefix, &generation, |done, total| {
                progress(Progress::Decoding { done, total });
            })
            .await?;
        Ok(stored)
    }
}
