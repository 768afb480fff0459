//! The decoder's hot path, free of gRPC: latents → VAE decode in temporal chunks ([`vae`]) → 8-bit frames →
//! streaming MP4 encode + PNG thumbnail → storage.
//!
//! Invariants: latents are unnormalised once per channel ([`vae::Vae::slice`]); the VAE runs chunk by chunk as the
//! bundle's decode mode allows (`independent`: `chunk_latent_frames` at a time; `stateful`: one latent frame at a
//! time with the feature cache carried over) and every chunk's frames go straight into the MP4 writer, so peak
//! memory depends on the chunk and the frame size, not on the video's length. Frames are quantised as the
//! reference does: clamp to [-1, 1], then round((x + 1) · 127.5) half to even.

pub mod encode;
pub mod vae;
pub mod windowed;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;
use vidmesh_model::{Manifest, Onnx, Part};
use vidmesh_runtime::TensorF32;
use vidmesh_storage::{JobFile, JobOutputs, ObjectRef, Storage};
use vidmesh_video::{EncodeOptions, Mp4Writer, Video};

use crate::config::Config;

/// Frames in a spritesheet (a 4 × 2 grid).
const SPRITES: usize = 8;
use crate::error::Error;
use vidmesh_runtime::status::Refusal;

/// What the C2PA manifest records about a generation.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// SHA-256 of the prompt, hex.
    pub prompt_sha256: String,
    /// Parameters (JSON object).
    pub parameters: serde_json::Value,
    /// The job's id, whose tag the watermark's payload carries.
    pub job_id: String,
    /// The job's seed: bundles whose decoder mixes in noise draw it from this seed's decode-noise stream.
    pub seed: u64,
}

/// A decoded, stored video.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The MP4.
    pub video: ObjectRef,
    /// The PNG thumbnail.
    pub thumbnail: ObjectRef,
    /// The PNG spritesheet (4 × 2 evenly spaced frames).
    pub spritesheet: ObjectRef,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Frames.
    pub frames: usize,
    /// Frame rate.
    pub fps: u32,
    /// Watermark PSNR in dB, when watermarked.
    pub watermark_psnr: Option<f64>,
    /// Whether a C2PA manifest was embedded.
    pub signed: bool,
}

/// The loaded VAE decoder and where results go.
pub struct Decoder {
    vae: vae::Vae,
    encoder: Option<encode::VaeEncoder>,
    storage: Arc<dyn Storage>,
    /// The bundle's manifest.
    pub manifest: Manifest,
    chunk: usize,
    encode: EncodeOptions,
    permits: Arc<Semaphore>,
    watermark: Option<vidmesh_watermark::Embedder>,
    /// The generator id every payload carries.
    generator_id: u8,
    signer: Option<Arc<vidmesh_provenance::Signer>>,
}

/// 8-bit RGB frames [T][H·W·3] from one sample's decoder output [3, T, H, W] in [-1, 1].
pub fn frames_u8(video: &[f32], t: usize, h: usize, w: usize) -> Vec<Vec<u8>> {
    let plane = t * h * w;
    (0..t)
        .map(|f| {
            let mut rgb = vec![0u8; h * w * 3];
            for c in 0..3 {
                let src = &video[c * plane + f * h * w..c * plane + (f + 1) * h * w];
                for (i, v) in src.iter().enumerate() {
                    rgb[i * 3 + c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round_ties_even() as u8;
                }
            }
            rgb
        })
        .collect()
}

impl Decoder {
    /// Opens the bundle's VAE decoder (sha256-checked) and the storage, and decodes one chunk to warm up.
    pub async fn load(config: &Config, onnx: &Onnx) -> Result<Self, Error> {
        let bundle = config.model.open(&[Part::VaeDecoder, Part::VaeEncoder])?;
        let vae = vae::Vae::load(&bundle, onnx)?;
        let encoder = encode::VaeEncoder::load(&bundle, onnx)?;
        let watermark = if config.watermark.key_hex.is_empty() {
            tracing::warn!("watermark.key_hex is empty: videos will NOT be watermarked");
            None
        } else {
            let key = vidmesh_watermark::Key::from_hex(&config.watermark.key_hex)
                .ok_or_else(|| Error::InvalidArgument("watermark.key_hex must be 64 hex digits".into()))?;
            let mut params = vidmesh_watermark::Params::default();
            if config.watermark.psnr_db > 0.0 {
                params.psnr_db = config.watermark.psnr_db;
            }
            Some(vidmesh_watermark::Embedder::new(&key, params))
        };
        let c = &config.c2pa;
        let signer = if c.cert_chain_path.is_empty() && c.private_key_path.is_empty() {
            tracing::warn!("c2pa credentials are not configured: videos will NOT carry C2PA provenance");
            None
        } else {
            let read =
                |p: &str| std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("c2pa: cannot read {p:?}: {e}")));
            Some(Arc::new(vidmesh_provenance::Signer::new(
                &read(&c.cert_chain_path)?,
                &read(&c.private_key_path)?,
                &read(&c.trust_anchors_path)?,
            )?))
        };
        let this = Self {
            watermark,
            generator_id: config.watermark.generator_id,
            signer,
            vae,
            encoder,
            storage: config.storage.open().await?,
            manifest: bundle.manifest,
            chunk: config.chunk_latent_frames,
            encode: EncodeOptions { qp: (config.qp_min, config.qp_max), ..Default::default() },
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
        };
        // At the smallest size, the shortest supported video that takes two runs (so a stateful VAE's step graph
        // runs too; else the shortest): every run's frame count is checked against the frame rule.
        let (_, height, width) = this.manifest.probes()[0];
        let mut counts = this.manifest.video.frames.values();
        counts.sort_unstable();
        let latent = |f: u32| this.manifest.vae.latent_frames(f as usize);
        let f = counts.iter().copied().find(|&f| this.vae.chunks(latent(f), this.chunk).len() >= 2);
        let f = f.or(counts.first().copied()).unwrap_or(this.manifest.video.default_frames);
        let [c, t, h, w] = this.manifest.latent_shape(f, height, width);
        let zeros = TensorF32::new(vec![c, t, h, w], vec![0.0; c * t * h * w]);
        this.decode_frames(&zeros, 0, |_, _| Ok(()), |_, _| {})
            .await
            .map_err(|e| Error::Inference(format!("warm-up decode of {t} latent frames at {width}x{height}: {e}")))?;
        tracing::info!(watermark = this.watermark.is_some(), c2pa = this.signer.is_some(), "decoder ready");
        Ok(this)
    }

    async fn vae_chunk(
        &self,
        z: Vec<f32>,
        shape: [usize; 4],
        cache: Option<vae::Cache>,
    ) -> Result<(vae::Chunk, Option<vae::Cache>), Error> {
        let vae = self.vae.clone();
        tokio::task::spawn_blocking(move || vae.run(z, shape, cache))
            .await
            .map_err(|e| Error::Inference(e.to_string()))?
            .map_err(Error::Inference)
    }

    /// Encodes a reference image or video for conditioning ([`encode`]); `progress(frames_done)` after each run.
    pub async fn encode(
        &self,
        media: Bytes,
        ask: encode::Ask,
        progress: impl FnMut(usize) + Send + 'static,
    ) -> Result<(TensorF32, encode::Encoded), Error> {
        let enc = self.encoder.clone().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{} has no VAE encoder: it cannot encode references",
                self.manifest.model.name
            ))
        })?;
        let chunk = self.chunk;
        tokio::task::spawn_blocking(move || enc.encode(&media, ask, chunk, progress))
            .await
            .map_err(|e| Error::Inference(e.to_string()))?
    }

    /// An object of this decoder's storage (a previous job's video, an uploaded reference).
    pub async fn read(&self, key: &str) -> Result<Bytes, Error> {
        Ok(self.storage.get(key).await?)
    }

    /// The embedder for `job_id`'s payload, when this decoder watermarks (as [`Decoder::decode`] marks frames).
    pub fn marker(&self, job_id: &str) -> Option<vidmesh_watermark::Embedder> {
        let payload = vidmesh_watermark::Payload {
            generator: self.generator_id,
            tag: vidmesh_watermark::Payload::tag_of(job_id),
        };
        self.watermark.as_ref().map(|e| e.with_payload(payload))
    }

    /// Refuses at once when `max_concurrent` decodes are running.
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::overloaded("decoder", std::time::Duration::from_secs(1)).into())
    }

    /// Runs the VAE over `latents` ([C, T', h, w], scaled) chunk by chunk (the bundle's decode mode) and hands every
    /// 8-bit RGB frame, in order, to `sink(index, frame)`; `progress(done, total)` is called after every chunk.
    /// `seed` is the job's (decoders that mix in noise draw it from the seed's decode-noise stream). Returns
    /// (frames, height, width).
    pub async fn decode_frames(
        &self,
        latents: &TensorF32,
        seed: u64,
        mut sink: impl FnMut(usize, Vec<u8>) -> Result<(), Error>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(usize, usize, usize), Error> {
        let m = &self.manifest;
        let [c, t, h, w] = [latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3]];
        let sc = m.vae.spatial_compression;
        let (frames, height, width) = (m.vae.frames_of(t), h * sc, w * sc);
        let mut done = 0;
        let mut cache = None;
        let windows = self.vae.windows(t);
        let mut blender = windows.map(windowed::Blender::new);
        let noise = self.vae.noisy().then(|| {
            vidmesh_model::noise::gaussian_stream(seed, vidmesh_model::noise::STREAM_DECODE, latents.data.len())
        });
        for (t0, n) in self.vae.chunks(t, self.chunk) {
            let z = self.vae.slice(&latents.data, [c, t, h, w], t0, n, noise.as_deref());
            let (chunk, next) = self.vae_chunk(z, [c, n, h, w], cache.take()).await?;
            cache = next;
            // A window decodes like a video of its own; the blender then decides which frames are final.
            let want = if windows.is_some() { m.vae.frames_of(n) } else { vae::expected_frames(m, t0, n) };
            if chunk.frames != want || chunk.video.len() != 3 * want * height * width {
                return Err(Error::Inference(format!(
                    "the VAE decoded latent frames {t0}..{} to {} frames ({} values); expected {want} frames of                      {width}x{height}",
                    t0 + n,
                    chunk.frames,
                    chunk.video.len()
                )));
            }
            let decoded = match blender.as_mut() {
                None => frames_u8(&chunk.video, chunk.frames, height, width),
                Some(b) => b
                    .push(windowed::split(&chunk.video, chunk.frames, height * width))
                    .iter()
                    .flat_map(|f| frames_u8(f, 1, height, width))
                    .collect(),
            };
            for f in decoded.into_iter().take(frames - done) {
                sink(done, f)?;
                done += 1;
            }
            progress(done, frames);
        }
        if done != frames {
            return Err(Error::Inference(format!("the VAE decoded {done} frames; expected {frames}")));
        }
        Ok((frames, height, width))
    }

    /// A PNG of one frame of `latents` ([C, T', h, w], scaled): the first frame decoded from the middle latent
    /// frame (decode noise, where the bundle has it, from seed 0: a preview is not the result). Returns
    /// (png, width, height).
    pub async fn preview(&self, latents: &TensorF32) -> Result<(Vec<u8>, usize, usize), Error> {
        let [c, t, h, w] = [latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3]];
        let (mid, plane) = (t / 2, h * w);
        let data: Vec<f32> = (0..c)
            .flat_map(|ch| latents.data[(ch * t + mid) * plane..(ch * t + mid + 1) * plane].iter().copied())
            .collect();
        let one = TensorF32::new(vec![c, 1, h, w], data);
        let mut first = None;
        let sink = |i: usize, f: Vec<u8>| {
            if i == 0 {
                first = Some(f);
            }
            Ok(())
        };
        let (_, height, width) = self.decode_frames(&one, 0, sink, |_, _| {}).await?;
        let frame = first.ok_or_else(|| Error::Inference("the VAE returned no frame".into()))?;
        Ok((vidmesh_video::png_frame(width, height, &frame)?, width, height))
    }

    /// Decodes `latents` ([C, T', h, w], scaled), watermarks, encodes and stores them under `prefix`;
    /// `progress(done, total)` is called after every chunk.
    pub async fn decode(
        &self,
        latents: &TensorF32,
        fps: u32,
        prefix: &str,
        generation: &Generation,
        progress: impl FnMut(usize, usize),
    ) -> Result<Stored, Error> {
        let m = &self.manifest;
        let sc = m.vae.spatial_compression;
        let (height, width) = (latents.shape[2] * sc, latents.shape[3] * sc);
        let frames = m.vae.frames_of(latents.shape[1]);
        let mut writer = Mp4Writer::new(width, height, f64::from(fps), &self.encode)?;
        let mut thumb = None;
        // Frames for the spritesheet: SPRITES evenly spaced ones.
        let sprite_at = |i: usize| (0..SPRITES).any(|k| k * frames / SPRITES == i);
        let mut sprites = Vec::with_capacity(SPRITES);
        let mut watermark_se = 0.0;
        let watermark = self.marker(&generation.job_id);
        let sink = |i: usize, mut f: Vec<u8>| {
            if let Some(wm) = &watermark {
                watermark_se += wm.embed_frame(&mut f, width, height, i, frames);
            }
            if i == frames / 2 {
                thumb = Some(f.clone());
            }
            if sprite_at(i) {
                sprites.push(f.clone());
            }
            writer.push(&f)?;
            Ok(())
        };
        self.decode_frames(latents, generation.seed, sink, progress).await?;
        let mp4 = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| Error::Inference(e.to_string()))??;
        let mp4 = match &self.signer {
            None => mp4,
            Some(signer) => {
                let claim = vidmesh_provenance::Claim {
                    model: m.model.name.clone(),
                    model_version: m.model.version.clone(),
                    parameters: generation.parameters.clone(),
                    prompt_sha256: generation.prompt_sha256.clone(),
                };
                let signer = signer.clone();
                let name = JobFile::Video.file_name();
                tokio::task::spawn_blocking(move || signer.sign_mp4(&mp4, name, &claim))
                    .await
                    .map_err(|e| Error::Inference(e.to_string()))??
            }
        };
        let thumb = thumb.ok_or_else(|| Error::Inference("no middle frame".into()))?;
        let png = vidmesh_video::png_frame(width, height, &thumb)?;
        let files = JobOutputs::at(prefix);
        let put = |file: JobFile, bytes: Vec<u8>| {
            let key = files.key(file);
            async move { self.storage.put(&key, Bytes::from(bytes), file.content_type()).await }
        };
        let video = put(JobFile::Video, mp4).await?;
        let thumbnail = put(JobFile::Thumbnail, png).await?;
        let sprites = Video { width, height, fps: f64::from(fps), frames: sprites };
        let spritesheet = put(JobFile::Spritesheet, vidmesh_video::spritesheet(&sprites, SPRITES / 2, 2)?).await?;
        let watermark_psnr =
            self.watermark.as_ref().map(|_| vidmesh_watermark::psnr_of(watermark_se, frames * width * height * 3));
        Ok(Stored {
            video,
            thumbnail,
            spritesheet,
            width,
            height,
            frames,
            fps,
            watermark_psnr,
            signed: self.signer.is_some(),
        })
    }
}
