//! A conditioned job's extra step: its reference encoded by the decoder's Encode RPC into latents, and what those
//! latents become for the denoiser (keyframes or init latents) and, for an extension, for the decoder (the source's
//! latents followed by the new ones).
//!
//! Invariants: the reference is read from storage (an upload stored with the job, or a previous job's video), so a
//! re-run after a crash encodes the same latents; an extension pins the source's last `context` frames at the start
//! of a `window`-frame generation and appends only the frames after them; the frame arithmetic is the bundle's
//! (`Manifest::extension`), the same the gateway checked at submission.

use tonic::Code;
use vidmesh_model::Manifest;
use vidmesh_proto::decoder::v1::{EncodeRequest, decoder_client::DecoderClient, encode_event, encode_request};
use vidmesh_proto::denoiser::v1::{DenoiseRequest, Keyframes};
use vidmesh_proto::gateway::v1::conditioning::Reference;
use vidmesh_proto::gateway::v1::{Conditioning, ConditioningMode};
use vidmesh_runtime::TensorF32;
use vidmesh_runtime::tensor::Assembler;
use vidmesh_storage::{JobFile, JobOutputs};

use super::{Failure, MAX_MESSAGE, Pipeline, Run};

/// What the conditioning gives the later steps.
pub enum Conditioned {
    /// Text only.
    None,
    /// Pinned latent frames (image→video), and where the free frames start from them (the bundle's
    /// `keyframe_strength`).
    Keyframes(TensorF32, Vec<u32>, f32),
    /// Init latents and strength (edit).
    Init(TensorF32, f32),
    /// An extension: the source's latents (all of them), and the window's pinned context.
    Extend {
        /// The source video's latents [C, T_src, h, w].
        source: TensorF32,
        /// Latent frames of context pinned at the window's start.
        context: usize,
        /// Frames the denoiser generates.
        window: u32,
        /// Where the free frames start from the context (the bundle's `keyframe_strength`).
        strength: f32,
    },
}

impl Conditioned {
    /// Sets the denoise request's conditioning fields (and an extension's window length).
    pub fn apply(&self, req: &mut DenoiseRequest) {
        match self {
            Conditioned::None => {}
            Conditioned::Keyframes(latents, positions, strength) => {
                let (latents, positions) = (Some(latents.to_proto()), positions.clone());
                req.keyframes = Some(Keyframes { latents, positions, strength: *strength });
            }
            Conditioned::Init(latents, strength) => {
                req.init_latents = Some(latents.to_proto());
                req.strength = *strength;
            }
            Conditioned::Extend { source, context, window, strength } => {
                let t = source.shape[1];
                let pinned = source.frames(t - context, t);
                let positions = (0..*context as u32).collect();
                req.keyframes = Some(Keyframes { latents: Some(pinned.to_proto()), positions, strength: *strength });
                req.frames = *window;
            }
        }
    }

    /// What the decoder decodes from the denoiser's latents: an extension's source followed by its new frames.
    pub fn output(&self, generated: TensorF32) -> TensorF32 {
        match self {
            Conditioned::Extend { source, context, .. } => {
                source.concat_frames(&generated.frames(*context, generated.shape[1]))
            }
            _ => generated,
        }
    }
}

/// Where the reference is stored.
fn reference_key(c: &Conditioning) -> Option<String> {
    if !c.stored_key.is_empty() {
        return Some(c.stored_key.clone());
    }
    match &c.reference {
        Some(Reference::VideoId(id)) => Some(JobOutputs::of_job(id).key(JobFile::Video)),
        _ => None,
    }
}

impl Pipeline {
    /// 1b. The reference, encoded by the decoder, as the later steps need it.
    pub(super) async fn condition(&self, run: &Run<'_>, m: &Manifest) -> Result<Conditioned, Failure> {
        let Some(c) = &run.req.conditioning else { return Ok(Conditioned::None) };
        let dc = &self.stages.decoder;
        let key = reference_key(c).ok_or_else(|| dc.answer("the job's reference is not stored", Code::Internal))?;
        let tc = m.vae.temporal_compression as u32;
        let mode = ConditioningMode::try_from(c.mode).unwrap_or(ConditioningMode::Unspecified);
        let (frames, still) = match mode {
            ConditioningMode::ImageToVideo => (tc, true),
            ConditioningMode::Edit => (run.req.num_frames, false),
            ConditioningMode::Extend => (c.source_frames - c.source_frames % tc, false),
            ConditioningMode::Unspecified => {
                return Err(dc.answer("the job's conditioning has no mode", Code::Internal));
            }
        };
        let encode = EncodeRequest {
            source: Some(encode_request::Source::Key(key)),
            width: run.req.width,
            height: run.req.height,
            frames,
            still,
            ..Default::default()
        };
        let mut stream = dc
            .call(run.deadline, &encode, |svc, r| async move {
                DecoderClient::new(svc).max_decoding_message_size(MAX_MESSAGE).encode(r).await
            })
            .await?;
        let (mut asm, mut latents) = (Assembler::new("latents"), None);
        while let Some(ev) = stream.message().await.map_err(|s| dc.failed(s))? {
            if let Some(encode_event::Event::Latents(chunk)) = ev.event {
                latents = asm.push(chunk).map_err(|e| dc.answer(e.to_string(), Code::Internal))?.or(latents);
            }
        }
        let latents = latents.ok_or_else(|| dc.answer("the encode ended without latents", Code::Unavailable))?;
        Ok(match mode {
            ConditioningMode::ImageToVideo => {
                Conditioned::Keyframes(latents, vec![0], m.conditioning.keyframe_strength)
            }
            ConditioningMode::Edit => Conditioned::Init(latents, c.strength),
            _ => {
                let ext = m
                    .extension(c.source_frames, run.req.num_frames)
                    .map_err(|e| dc.answer(e, Code::FailedPrecondition))?;
                let (context, window) = ((ext.context / tc) as usize, ext.window);
                Conditioned::Extend { source: latents, context, window, strength: m.conditioning.keyframe_strength }
            }
        })
    }
}
