//! One job through the four stages, as a short list of steps over one stage-call helper ([`Stage::call`]:
//! deadline, retry, trace context, balancing): [`Pipeline::encode`] → [`Pipeline::denoise`] (streamed steps) →
//! [`Pipeline::decode`] (streamed chunks, stored files) → [`Pipeline::classify`] (the stored video) →
//! [`Pipeline::outputs`], every step recorded as a job event with one monotonic progress and an ETA
//! ([`progress`]).
//!
//! Invariants: the pipeline future holds the stage streams, so dropping it (cancel) drops the denoiser's stream and
//! the denoiser stops within one step; every stage call carries the job's remaining deadline; the outputs go under
//! the job's [`JobOutputs`] prefix, so a re-run after a crash overwrites rather than duplicates.

pub mod condition;
pub mod progress;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tonic::{Code, Status};
use vidmesh_proto::classifier::v1::{DetectRequest, Verdict, classifier_client::ClassifierClient, detect_request};
use vidmesh_proto::decoder::v1::{
    DecodeRequest, PreviewRequest, StoredObject, VideoRef, decode_event, decoder_client::DecoderClient,
};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, denoise_event, denoiser_client::DenoiserClient};
use vidmesh_proto::gateway::v1::{
    Decoding, Denoising, GenerateRequest, Job, Output, Result as JobResult, Stage as Step, job_event::Event,
};
use vidmesh_proto::tensor::v1::Tensor;
use vidmesh_proto::text_encoder::v1::{EncodeRequest, Encoding, text_encoder_client::TextEncoderClient};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::tensor::Assembler;
use vidmesh_storage::{JobOutputs, Storage};

use crate::jobs::{self, PROGRESS_ENCODING};
use crate::metrics::Metrics;
use crate::stages::{Stage, Stages};
use crate::store::Store;
pub use progress::Progress;

/// Why a job failed. Its code and message are what the job's failure records (an internal one is logged and
/// shown to the caller only as a trace id).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A stage refused or failed a call.
    #[error("{stage}: {}", status.message())]
    Stage {
        /// Which.
        stage: &'static str,
        /// What it answered.
        status: Status,
    },
    /// A stage's answer cannot be used (a stream that ended early, a malformed tensor).
    #[error("{stage}: {message}")]
    Answer {
        /// Which.
        stage: &'static str,
        /// What is wrong with it.
        message: String,
        /// UNAVAILABLE when a retry of the job may succeed, INTERNAL when not.
        code: Code,
    },
    /// The job store or the storage failed.
    #[error(transparent)]
    Gateway(#[from] crate::Error),
}

impl From<Failure> for Status {
    /// The status the job's failure records: the stage's code with the stage named in the message.
    fn from(f: Failure) -> Self {
        match f {
            Failure::Stage { stage, status } => Status::new(status.code(), format!("{stage}: {}", status.message())),
            Failure::Answer { code, .. } => Status::new(code, f.to_string()),
            Failure::Gateway(e) => Status::from(e),
        }
    }
}

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
    /// Progress and ETA.
    pub progress: Progress,
    /// Whether the model takes a negative prompt (false: embedded or no guidance; none is encoded or sent).
    pub negative: bool,
    /// The served bundle's manifest (conditioning's frame arithmetic).
    pub manifest: vidmesh_model::Manifest,
}

/// Largest stage reply accepted: a preview carries the whole x0 estimate in one message, larger than gRPC's 4 MiB
/// default for big models (final latents are streamed in chunks).
const MAX_MESSAGE: usize = 256 << 20;

/// The longest a step's preview may take, retries included.
const PREVIEW_BUDGET: Duration = Duration::from_secs(2);

/// One job's run: its id, request and deadline.
struct Run<'a> {
    id: &'a str,
    req: GenerateRequest,
    deadline: Instant,
}

impl Pipeline {
    /// Runs `job` to its result.
    pub async fn run(&self, job: &Job) -> Result<JobResult, Failure> {
        let run = Run {
            id: &job.id,
            req: job.request.clone().unwrap_or_default(),
            deadline: Instant::now() + self.job_timeout,
        };
        let (prompt, negative) = self.encode(&run).await?;
        let conditioned = self.condition(&run, &self.manifest).await?;
        let latents = self.denoise(&run, prompt, negative, &conditioned).await?;
        let tail_start = Instant::now();
        let video = self.decode(&run, conditioned.output(latents), tail_start).await?;
        let (verdict, reasons) = self.classify(&run, &video, tail_start).await?;
        self.progress.finished(tail_start.elapsed());
        self.outputs(video, verdict, reasons).await
    }

    async fn emit(&self, run: &Run<'_>, event: Event, (progress, eta): progress::Point) -> Result<(), Failure> {
        self.store.append(run.id, event, progress, eta).await?;
        Ok(())
    }

    fn timed(&self, stage: &Stage, t0: Instant) {
        self.metrics.seconds.with_label_values(&[stage.name]).observe(t0.elapsed().as_secs_f64());
    }

    /// 1. Text: the prompt and the negative prompt (the unconditional branch) in one call.
    async fn encode(&self, run: &Run<'_>) -> Result<(Encoding, Encoding), Failure> {
        self.emit(run, Event::Encoding(Step {}), (PROGRESS_ENCODING, 0.0)).await?;
        let (t0, te) = (Instant::now(), &self.stages.text_encoder);
        let mut prompts = vec![run.req.prompt.clone()];
        if self.negative {
            prompts.push(run.req.negative_prompt.clone());
        }
        let req = EncodeRequest { prompts, ..Default::default() };
        let encoded =
            te.call(run.deadline, &req, |svc, r| async move { TextEncoderClient::new(svc).encode(r).await }).await?;
        self.timed(te, t0);
        let mut encodings = encoded.encodings.into_iter();
        let prompt = encodings.next().ok_or_else(|| te.answer("no encoding came back", Code::Internal))?;
        Ok((prompt, encodings.next().filter(|_| self.negative).unwrap_or_default()))
    }

    /// 2. Denoise, one event per step (with the decoder's preview PNG where asked for).
    async fn denoise(
        &self,
        run: &Run<'_>,
        prompt: Encoding,
        negative: Encoding,
        conditioned: &condition::Conditioned,
    ) -> Result<TensorF32, Failure> {
        let (t0, dn, req) = (Instant::now(), &self.stages.denoiser, &run.req);
        let mut denoise = DenoiseRequest {
            prompt_states: prompt.hidden_states,
            negative_states: negative.hidden_states, // None where the model takes no negative prompt
            seed: req.seed.unwrap_or_default(),
            frames: req.num_frames,
            height: req.height,
            width: req.width,
            steps: req.num_inference_steps,
            guidance: req.guidance_scale,
            scheduler: req.scheduler.clone(),
            cache: req.cache.clone(),
            preview_every: req.preview_every,
            prompt_real_tokens: prompt.real_tokens,
            negative_real_tokens: negative.real_tokens,
            prompt_pooled: prompt.pooled,
            negative_pooled: negative.pooled,
            fps: req.fps,
            ..Default::default()
        };
        conditioned.apply(&mut denoise);
        let open =
            |svc, r| async move { DenoiserClient::new(svc).max_decoding_message_size(MAX_MESSAGE).denoise(r).await };
        // A re-run after a broken stream (see Stage::stream) starts over from step 0 with the same seed, so it
        // computes the same steps again: the log keeps going from the highest step already reported.
        let (mut asm, mut latents, mut current, mut reported) = (Assembler::new("latents"), None, 1, 0);
        // The denoiser sends a step's preview just before its progress event; the PNG rides on the latter.
        let mut preview: Option<(u32, Vec<u8>)> = None;
        let mut stream = dn.stream(run.deadline, &denoise, open);
        while let Some((attempt, ev)) = stream.next().await? {
            if attempt != current {
                (current, asm, latents, preview) = (attempt, Assembler::new("latents"), None, None);
            }
            match ev.event {
                Some(denoise_event::Event::Preview(p)) if p.step > reported => {
                    preview = self.preview(run.deadline, p.x0).await.map(|png| (p.step, png));
                }
                Some(denoise_event::Event::Progress(p)) if p.step > reported => {
                    reported = p.step;
                    let at = self.progress.denoising(p.step, p.total, Duration::from_millis(p.eta_ms));
                    let preview_png = preview.take().filter(|(step, _)| *step == p.step).map(|(_, png)| png);
                    let event = Event::Denoising(Denoising {
                        step: p.step,
                        total: p.total,
                        preview_png: preview_png.unwrap_or_default(),
                    });
                    self.emit(run, event, at).await?;
                }
                Some(denoise_event::Event::Latents(chunk)) => {
                    let chunk = asm.push(chunk).map_err(|e| dn.answer(e.to_string(), Code::Internal))?;
                    latents = chunk.or(latents.take());
                }
                _ => {}
            }
        }
        let latents = latents.ok_or_else(|| dn.answer("the stream ended without latents", Code::Unavailable))?;
        self.timed(dn, t0);
        Ok(latents)
    }

    /// 3. Decode, watermark, sign, store.
    async fn decode(&self, run: &Run<'_>, latents: TensorF32, tail_start: Instant) -> Result<VideoRef, Failure> {
        let (dc, req) = (&self.stages.decoder, &run.req);
        let mode = req.conditioning.as_ref().map(|c| c.mode().as_str_name());
        let parameters = serde_json::json!({
            "conditioning": mode, "remixed_from": req.remixed_from,
            "seed": req.seed, "frames": req.num_frames, "width": req.width, "height": req.height, "fps": req.fps,
            "steps": req.num_inference_steps, "guidance": req.guidance_scale, "scheduler": req.scheduler, "cache": req.cache,
        });
        let decode = DecodeRequest {
            latents: Some(latents.to_proto()),
            fps: req.fps,
            output_prefix: JobOutputs::of_job(run.id).prefix().to_string(),
            job_id: run.id.to_string(),
            prompt_sha256: vidmesh_storage::sha256_hex(req.prompt.as_bytes()),
            parameters_json: parameters.to_string(),
            seed: req.seed.unwrap_or_default(),
            ..Default::default()
        };
        let open = |svc, r| async move { DecoderClient::new(svc).decode(r).await };
        // A re-run after a broken stream decodes every frame again and overwrites the same keys; the log goes on
        // from the most frames already reported.
        let (mut video, mut reported) = (None, 0);
        let mut stream = dc.stream(run.deadline, &decode, open);
        while let Some((_, ev)) = stream.next().await? {
            match ev.event {
                Some(decode_event::Event::Progress(p)) if p.frames_done > reported => {
                    reported = p.frames_done;
                    let at = self.progress.decoding(p.frames_done, p.frames_total, tail_start);
                    let event = Event::Decoding(Decoding { frames_done: p.frames_done, frames_total: p.frames_total });
                    self.emit(run, event, at).await?;
                }
                Some(decode_event::Event::Completed(v)) => video = Some(v),
                _ => {}
            }
        }
        let video = video.ok_or_else(|| dc.answer("the stream ended without a video", Code::Unavailable))?;
        self.timed(dc, tail_start);
        Ok(video)
    }

    /// 4. Classify the stored video (the report ships with the result); nothing without a classifier.
    async fn classify(
        &self,
        run: &Run<'_>,
        video: &VideoRef,
        tail_start: Instant,
    ) -> Result<(String, Vec<String>), Failure> {
        let Some(cl) = &self.stages.classifier else { return Ok((String::new(), Vec::new())) };
        let t0 = Instant::now();
        self.emit(run, Event::Classifying(Step {}), self.progress.classifying(tail_start)).await?;
        let uri = video.video.as_ref().map(|v| v.uri.clone()).unwrap_or_default();
        let req = DetectRequest { source: Some(detect_request::Source::Uri(uri)) };
        let report =
            cl.call(run.deadline, &req, |svc, r| async move { ClassifierClient::new(svc).detect(r).await }).await?;
        self.timed(cl, t0);
        let verdict = Verdict::try_from(report.verdict)
            .map(|v| v.as_str_name().trim_start_matches("VERDICT_").to_ascii_lowercase())
            .unwrap_or_default();
        Ok((verdict, report.reasons))
    }

    /// 5. The result: the stored files as the API shows them.
    async fn outputs(&self, video: VideoRef, verdict: String, reasons: Vec<String>) -> Result<JobResult, Failure> {
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

    /// The decoder's PNG of an x0 estimate; `None` (logged) when it fails — previews are best effort: retries stop
    /// after [`PREVIEW_BUDGET`], so a decoder that is down never holds up the denoising.
    async fn preview(&self, deadline: Instant, x0: Option<Tensor>) -> Option<Vec<u8>> {
        let deadline = deadline.min(Instant::now() + PREVIEW_BUDGET);
        let req = PreviewRequest { latents: x0, ..Default::default() };
        let dc = &self.stages.decoder;
        match dc.call(deadline, &req, |svc, r| async move { DecoderClient::new(svc).preview(r).await }).await {
            Ok(r) => Some(r.png),
            Err(e) => {
                tracing::warn!("preview skipped: {e}");
                None
            }
        }
    }

    /// A stored object as the API shows it, with a presigned URL when the storage has them.
    async fn output(&self, o: StoredObject) -> Result<Output, Failure> {
        let key = self.storage.key_of(&o.uri).map_err(crate::Error::from)?;
        let url = self.storage.presigned_get(&key, self.url_ttl).await.map_err(crate::Error::from)?;
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
