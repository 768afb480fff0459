//! One job through the four stages: text-encoder → denoiser (streamed steps) → decoder (streamed chunks, stored
//! MP4) → classifier (on the stored video), with every step recorded as a job event and progress mapped onto one
//! monotonic percentage with an ETA.
//!
//! Invariants: the pipeline future holds the stage streams, so dropping it (cancel) drops the denoiser's stream and
//! the denoiser stops within one step; every stage call carries the job's remaining deadline; the outputs go under
//! `jobs/<id>/`, so a re-run after a crash overwrites rather than duplicates.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tonic::{Request, Status};
use vidmesh_proto::classifier::v1::{DetectRequest, Verdict, classifier_client::ClassifierClient, detect_request};
use vidmesh_proto::decoder::v1::{
    DecodeRequest, PreviewRequest, StoredObject, decode_event, decoder_client::DecoderClient,
};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, denoise_event, denoiser_client::DenoiserClient};
use vidmesh_proto::gateway::v1::{Decoding, Denoising, Job, Output, Result as JobResult, Stage, job_event::Event};
use vidmesh_proto::text_encoder::v1::{EncodeRequest, text_encoder_client::TextEncoderClient};
use vidmesh_runtime::tensor::Assembler;
use vidmesh_storage::Storage;

use crate::jobs::{self, PROGRESS_DECODE_END, PROGRESS_DENOISE_END, PROGRESS_DENOISE_START, PROGRESS_ENCODING};
use crate::metrics::Metrics;
use crate::stages::Stages;
use crate::store::Store;

/// What runs jobs: the stages, the store the events go to, and the storage outputs are presigned from.
pub struct Pipeline {
    /// Job store.
    pub store: Store,
    /// Stage clients.
    pub stages: Stages,
    /// The decoder's storage.
    pub storage: Arc<dyn Storage>,
    /// Presigned URL lifetime.
    pub url_ttl: Duration,
    /// A job's whole deadline.
    pub job_timeout: Duration,
    /// Collectors.
    pub metrics: Metrics,
    /// Moving average of seconds from the last denoising step to completion (for the ETA).
    pub tail_seconds: Mutex<Option<f64>>,
    /// Whether the model takes a negative prompt (false: embedded or no guidance; none is encoded or sent).
    pub negative: bool,
}

/// Largest stage reply accepted: a preview carries the whole x0 estimate in one message, larger than gRPC's 4 MiB
/// default for big models (final latents are streamed in chunks).
const MAX_MESSAGE: usize = 256 << 20;

fn stage_error(stage: &str, s: Status) -> Status {
    Status::new(s.code(), format!("{stage}: {}", s.message()))
}

impl Pipeline {
    async fn emit(&self, id: &str, event: Event, progress: f64, eta: f64) -> Result<(), Status> {
        self.store.append(id, event, progress, eta).await.map_err(Status::from)?;
        Ok(())
    }

    fn tail(&self) -> f64 {
        self.tail_seconds.lock().map(|t| t.unwrap_or(0.0)).unwrap_or(0.0)
    }

    /// Runs `job` to its result. Errors are statuses whose message a caller may read.
    pub async fn run(&self, job: &Job) -> Result<JobResult, Status> {
        let id = job.id.as_str();
        let req = job.request.clone().unwrap_or_default();
        let deadline = Instant::now() + self.job_timeout;
        let seconds = |stage: &str, t0: Instant| {
            self.metrics.seconds.with_label_values(&[stage]).observe(t0.elapsed().as_secs_f64());
        };

        // 1. Text: the prompt and the negative prompt (the unconditional branch) in one call.
        self.emit(id, Event::Encoding(Stage {}), PROGRESS_ENCODING, 0.0).await?;
        let t0 = Instant::now();
        let te = &self.stages.text_encoder;
        let encoded = te
            .retry(deadline, |left| {
                let prompts = if self.negative {
                    vec![req.prompt.clone(), req.negative_prompt.clone()]
                } else {
                    vec![req.prompt.clone()]
                };
                let mut r = Request::new(EncodeRequest { prompts, ..Default::default() });
                r.set_timeout(left);
                let mut client = TextEncoderClient::new(te.svc());
                async move { client.encode(r).await }
            })
            .await
            .map_err(|s| stage_error(te.name, s))?
            .into_inner();
        seconds(te.name, t0);
        let mut encodings = encoded.encodings.into_iter();
        let prompt = encodings.next().ok_or_else(|| Status::internal("text-encoder: no encoding came back"))?;
        let negative = encodings.next().filter(|_| self.negative).unwrap_or_default();

        // 2. Denoise, one event per step.
        let t0 = Instant::now();
        let dn = &self.stages.denoiser;
        let denoise = DenoiseRequest {
            prompt_states: prompt.hidden_states,
            negative_states: negative.hidden_states, // None where the model takes no negative prompt
            seed: req.seed.unwrap_or_default(),
            frames: req.num_frames,
            height: req.height,
            width: req.width,
            steps: req.num_inference_steps,
            guidance: req.guidance_scale,
            scheduler: req.scheduler.clone(),
            preview_every: req.preview_every,
            prompt_real_tokens: prompt.real_tokens,
            negative_real_tokens: negative.real_tokens,
            prompt_pooled: prompt.pooled,
            negative_pooled: negative.pooled,
            fps: req.fps,
            ..Default::default()
        };
        let mut stream = dn
            .retry(deadline, |left| {
                let mut r = Request::new(denoise.clone());
                r.set_timeout(left);
                let mut client = DenoiserClient::new(dn.svc()).max_decoding_message_size(MAX_MESSAGE);
                async move { client.denoise(r).await }
            })
            .await
            .map_err(|s| stage_error(dn.name, s))?
            .into_inner();
        let mut asm = Assembler::new("latents");
        let mut latents = None;
        // The denoiser sends a step's preview just before its progress event; the PNG rides on the latter.
        let mut preview: Option<(u32, Vec<u8>)> = None;
        while let Some(ev) = stream.message().await.map_err(|s| stage_error(dn.name, s))? {
            match ev.event {
                Some(denoise_event::Event::Preview(p)) => {
                    preview = self.preview(deadline, p.x0).await.map(|png| (p.step, png));
                }
                Some(denoise_event::Event::Progress(p)) => {
                    let frac = f64::from(p.step) / f64::from(p.total.max(1));
                    let progress = PROGRESS_DENOISE_START + (PROGRESS_DENOISE_END - PROGRESS_DENOISE_START) * frac;
                    let eta = p.eta_ms as f64 / 1e3 + self.tail();
                    let preview_png = match preview.take() {
                        Some((step, png)) if step == p.step => png,
                        _ => Vec::new(),
                    };
                    let event = Event::Denoising(Denoising { step: p.step, total: p.total, preview_png });
                    self.emit(id, event, progress, eta).await?;
                }
                Some(denoise_event::Event::Latents(chunk)) => {
                    latents = asm.push(chunk).map_err(|e| Status::internal(format!("denoiser: {e}")))?.or(latents);
                }
                _ => {}
            }
        }
        let latents = latents.ok_or_else(|| Status::unavailable("denoiser: the stream ended without latents"))?;
        seconds(dn.name, t0);

        // 3. Decode, watermark, sign, store.
        let tail0 = Instant::now();
        let dc = &self.stages.decoder;
        let parameters = serde_json::json!({
            "seed": req.seed, "frames": req.num_frames, "width": req.width, "height": req.height, "fps": req.fps,
            "steps": req.num_inference_steps, "guidance": req.guidance_scale, "scheduler": req.scheduler,
        });
        let decode = DecodeRequest {
            latents: Some(latents.to_proto()),
            fps: req.fps,
            output_prefix: format!("jobs/{id}"),
            job_id: id.to_string(),
            prompt_sha256: vidmesh_storage::sha256_hex(req.prompt.as_bytes()),
            parameters_json: parameters.to_string(),
            seed: req.seed.unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = dc
            .retry(deadline, |left| {
                let mut r = Request::new(decode.clone());
                r.set_timeout(left);
                let mut client = DecoderClient::new(dc.svc());
                async move { client.decode(r).await }
            })
            .await
            .map_err(|s| stage_error(dc.name, s))?
            .into_inner();
        let mut video = None;
        while let Some(ev) = stream.message().await.map_err(|s| stage_error(dc.name, s))? {
            match ev.event {
                Some(decode_event::Event::Progress(p)) => {
                    let frac = f64::from(p.frames_done) / f64::from(p.frames_total.max(1));
                    let progress = PROGRESS_DENOISE_END + (PROGRESS_DECODE_END - PROGRESS_DENOISE_END) * frac;
                    let eta = (self.tail() - tail0.elapsed().as_secs_f64()).max(0.0);
                    let event = Event::Decoding(Decoding { frames_done: p.frames_done, frames_total: p.frames_total });
                    self.emit(id, event, progress, eta).await?;
                }
                Some(decode_event::Event::Completed(v)) => video = Some(v),
                _ => {}
            }
        }
        let video = video.ok_or_else(|| Status::unavailable("decoder: the stream ended without a video"))?;
        seconds(dc.name, tail0);

        // 4. Classify the stored video (the report ships with the result).
        let (mut verdict, mut reasons) = (String::new(), Vec::new());
        let stored = video.video.clone().unwrap_or_default();
        if let Some(cl) = &self.stages.classifier {
            let t0 = Instant::now();
            let eta = (self.tail() - tail0.elapsed().as_secs_f64()).max(0.0);
            self.emit(id, Event::Classifying(Stage {}), PROGRESS_DECODE_END, eta).await?;
            let report = cl
                .retry(deadline, |left| {
                    let mut r =
                        Request::new(DetectRequest { source: Some(detect_request::Source::Uri(stored.uri.clone())) });
                    r.set_timeout(left);
                    let mut client = ClassifierClient::new(cl.svc());
                    async move { client.detect(r).await }
                })
                .await
                .map_err(|s| stage_error(cl.name, s))?
                .into_inner();
            seconds(cl.name, t0);
            verdict = Verdict::try_from(report.verdict)
                .map(|v| v.as_str_name().trim_start_matches("VERDICT_").to_ascii_lowercase())
                .unwrap_or_default();
            reasons = report.reasons;
        }
        let tail = tail0.elapsed().as_secs_f64();
        if let Ok(mut t) = self.tail_seconds.lock() {
            *t = Some(t.map_or(tail, |old| 0.7 * old + 0.3 * tail));
        }
        Ok(JobResult {
            video: Some(self.output(video.video.unwrap_or_default()).await?),
            thumbnail: Some(self.output(video.thumbnail.unwrap_or_default()).await?),
            spritesheet: Some(self.output(video.spritesheet.unwrap_or_default()).await?),
            width: video.width,
            height: video.height,
            frames: video.frames,
            fps: video.fps,
            duration_seconds: video.duration_seconds,
            detection_verdict: verdict,
            detection_reasons: reasons,
        })
    }

    /// The decoder's PNG of an x0 estimate; `None` (logged) when it fails — previews are best effort.
    async fn preview(&self, deadline: Instant, x0: Option<vidmesh_proto::tensor::v1::Tensor>) -> Option<Vec<u8>> {
        let dc = &self.stages.decoder;
        let req = PreviewRequest { latents: x0, ..Default::default() };
        let result = dc
            .retry(deadline, |left| {
                let mut r = Request::new(req.clone());
                r.set_timeout(left);
                let mut client = DecoderClient::new(dc.svc());
                async move { client.preview(r).await }
            })
            .await;
        match result {
            Ok(r) => Some(r.into_inner().png),
            Err(s) => {
                tracing::warn!("preview skipped: {}", s.message());
                None
            }
        }
    }

    /// A stored object as the API shows it, with a presigned URL when the storage has them.
    async fn output(&self, o: StoredObject) -> Result<Output, Status> {
        let key = self.storage.key_of(&o.uri).map_err(|e| Status::internal(e.to_string()))?;
        let url = self.storage.presigned_get(&key, self.url_ttl).await.map_err(|e| Status::internal(e.to_string()))?;
        let expires = url.as_ref().map(|_| jobs::timestamp(SystemTime::now() + self.url_ttl));
        Ok(Output {
            uri: o.uri,
            url: url.unwrap_or_default(),
            url_expires_at: expires,
            sha256: o.sha256,
            bytes: o.bytes,
            content_type: o.content_type,
        })
    }
}
