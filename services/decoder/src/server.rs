//! The gRPC face of the decoder: validates latents against the manifest, runs the engine, streams progress.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use vidmesh_proto::decoder::v1::{
    DecodeEvent, DecodeProgress, DecodeRequest, EncodeDone, EncodeEvent, EncodeProgress, EncodeRequest, PreviewRequest,
    PreviewResponse, StoredObject, VideoRef, decode_event::Event as Ev, decoder_server::Decoder as DecoderRpc,
    encode_event::Event as EncEv, encode_request::Source,
};
use vidmesh_runtime::{Drain, TensorF32};
use vidmesh_storage::{ObjectRef, validate_key};

use crate::config::Config;
use crate::engine::{Decoder, Generation, Stored};
use crate::error::Error;
use vidmesh_runtime::status::Refusal;

/// Shared by the handlers and the loader.
pub struct State {
    /// Set once the model is loaded and warm.
    pub decoder: OnceLock<Decoder>,
    /// Collectors (set at load).
    pub metrics: crate::metrics::Metrics,
    /// Refuses new work once shutdown starts.
    pub drain: Drain,
    /// The service configuration.
    pub config: Config,
}

/// The tonic service.
#[derive(Clone)]
pub struct Service(pub Arc<State>);

type EventStream = Pin<Box<dyn Stream<Item = Result<DecodeEvent, Status>> + Send>>;
type EncodeStream = Pin<Box<dyn Stream<Item = Result<EncodeEvent, Status>> + Send>>;

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn check_model(d: &Decoder, model: &str) -> Result<(), Error> {
    let m = &d.manifest;
    if !model.is_empty() && model != m.model.name {
        return Err(Refusal::UnknownModel { requested: model.to_string(), served: m.model.name.clone() }.into());
    }
    Ok(())
}

/// Checks a generation's latents against the manifest (model name, channels, frame count, size).
fn validate_latents(
    d: &Decoder,
    model: &str,
    latents: Option<&vidmesh_proto::tensor::v1::Tensor>,
) -> Result<TensorF32, Error> {
    check_model(d, model)?;
    let latents = TensorF32::from_proto("latents", latents)?;
    d.manifest.check_latents(&latents.shape).map_err(bad)?;
    Ok(latents)
}

/// Checks an encode request; returns the ask.
fn validate_encode(d: &Decoder, req: &EncodeRequest) -> Result<crate::engine::encode::Ask, Error> {
    check_model(d, &req.model)?;
    let m = &d.manifest;
    let (mut width, mut height) = (req.width, req.height);
    if (width, height) == (0, 0) {
        (width, height) = (m.video.default_width, m.video.default_height);
    }
    m.check_size(height, width).map_err(bad)?;
    let tc = m.vae.temporal_compression as u32;
    if !req.frames.is_multiple_of(tc)
        || req.frames > vidmesh_model::conditioning::MAX_STITCH_FACTOR * m.video.frames.max()
    {
        return Err(bad(format!(
            "frames {} must be a multiple of {tc} and at most {}",
            req.frames,
            vidmesh_model::conditioning::MAX_STITCH_FACTOR * m.video.frames.max()
        )));
    }
    Ok(crate::engine::encode::Ask {
        width: width as usize,
        height: height as usize,
        frames: req.frames as usize,
        still: req.still,
    })
}

/// Checks the request against the manifest; returns the latents, fps and generation record.
pub fn validate(d: &Decoder, req: &DecodeRequest) -> Result<(TensorF32, u32, Generation), Error> {
    let m = &d.manifest;
    check_model(d, &req.model)?;
    // A stitched extension is longer than one generation: the decoder takes any length up to the stitch limit.
    let latents = TensorF32::from_proto("latents", req.latents.as_ref())?;
    m.check_stitched_latents(&latents.shape).map_err(bad)?;
    let fps = if req.fps == 0 { m.video.default_fps } else { req.fps };
    m.check_fps(fps).map_err(bad)?;
    if req.output_prefix.is_empty() {
        return Err(bad("output_prefix is empty (e.g. \"jobs/<id>\")".into()));
    }
    validate_key(&req.output_prefix).map_err(|e| bad(format!("output_prefix: {e}")))?;
    if !(req.prompt_sha256.is_empty()
        || (req.prompt_sha256.len() == 64 && req.prompt_sha256.bytes().all(|b| b.is_ascii_hexdigit())))
    {
        return Err(bad("prompt_sha256 must be 64 hex digits".into()));
    }
    let parameters = if req.parameters_json.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str::<serde_json::Value>(&req.parameters_json) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Err(bad("parameters_json must be a JSON object".into())),
        }
    };
    let job_id = if req.job_id.is_empty() { req.output_prefix.clone() } else { req.job_id.clone() };
    let generation = Generation { prompt_sha256: req.prompt_sha256.to_lowercase(), parameters, job_id, seed: req.seed };
    Ok((latents, fps, generation))
}

fn object(o: &ObjectRef, content_type: &str) -> StoredObject {
    StoredObject { uri: o.uri.clone(), sha256: o.sha256.clone(), bytes: o.bytes, content_type: content_type.into() }
}

fn video_ref(s: &Stored) -> VideoRef {
    VideoRef {
        video: Some(object(&s.video, "video/mp4")),
        thumbnail: Some(object(&s.thumbnail, "image/png")),
        spritesheet: Some(object(&s.spritesheet, "image/png")),
        width: s.width as u32,
        height: s.height as u32,
        frames: s.frames as u32,
        fps: s.fps,
        duration_seconds: s.frames as f64 / f64::from(s.fps),
        watermarked: s.watermark_psnr.is_some(),
        watermark_psnr_db: s.watermark_psnr.unwrap_or(0.0),
        c2pa_signed: s.signed,
    }
}

#[tonic::async_trait]
impl DecoderRpc for Service {
    type DecodeStream = EventStream;

    async fn decode(&self, request: Request<DecodeRequest>) -> Result<Response<EventStream>, Status> {
        let d = self.0.drain.ready(&self.0.decoder)?;
        let req = request.into_inner();
        let (latents, fps, generation) = validate(d, &req)?;
        let metrics = self.0.metrics.clone();
        let permit = d.admit()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = self.0.clone();
        metrics.active.inc();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(d) = state.decoder.get() else { return };
            let started = std::time::Instant::now();
            let progress_tx = tx.clone();
            let result = d
                .decode(&latents, fps, &req.output_prefix, &generation, |done, total| {
                    let p = DecodeProgress { frames_done: done as u32, frames_total: total as u32 };
                    let _ = progress_tx.send(Ok(DecodeEvent { event: Some(Ev::Progress(p)) }));
                })
                .await;
            metrics.active.dec();
            metrics.requests.with_label_values(&[if result.is_ok() { "completed" } else { "failed" }]).inc();
            if let Ok(s) = &result {
                metrics.frames.inc_by(s.frames as u64);
                metrics.decode_seconds.observe(started.elapsed().as_secs_f64());
            }
            let _ = tx.send(match result {
                Ok(s) => Ok(DecodeEvent { event: Some(Ev::Completed(video_ref(&s))) }),
                Err(e) => Err(e.into()),
            });
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    type EncodeStream = EncodeStream;

    async fn encode(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeStream>, Status> {
        let d = self.0.drain.ready(&self.0.decoder)?;
        let req = request.into_inner();
        let ask = validate_encode(d, &req)?;
        let media = match req.source {
            Some(Source::Data(b)) if !b.is_empty() => bytes::Bytes::from(b),
            Some(Source::Key(k)) if !k.is_empty() => {
                validate_key(&k).map_err(|e| bad(format!("key: {e}")))?;
                d.read(&k).await?
            }
            _ => return Err(bad("source is empty: send the media's bytes or a storage key".into()).into()),
        };
        let permit = d.admit()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = self.0.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(d) = state.decoder.get() else { return };
            let progress_tx = tx.clone();
            let progress = move |done: usize| {
                let p = EncodeProgress { frames_done: done as u32 };
                let _ = progress_tx.send(Ok(EncodeEvent { event: Some(EncEv::Progress(p)) }));
            };
            match d.encode(media, ask, progress).await {
                Ok((latents, info)) => {
                    for chunk in latents.to_chunks(vidmesh_runtime::tensor::DEFAULT_CHUNK_BYTES) {
                        let _ = tx.send(Ok(EncodeEvent { event: Some(EncEv::Latents(chunk)) }));
                    }
                    let done = EncodeDone {
                        source_width: info.source_width as u32,
                        source_height: info.source_height as u32,
                        frames: info.frames as u32,
                        image: info.image,
                    };
                    let _ = tx.send(Ok(EncodeEvent { event: Some(EncEv::Done(done)) }));
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn preview(&self, request: Request<PreviewRequest>) -> Result<Response<PreviewResponse>, Status> {
        let d = self.0.drain.ready(&self.0.decoder)?;
        let req = request.into_inner();
        let latents = validate_latents(d, &req.model, req.latents.as_ref())?;
        let _permit = d.admit()?;
        let (png, width, height) = d.preview(&latents).await?;
        Ok(Response::new(PreviewResponse { png, width: width as u32, height: height as u32 }))
    }
}
