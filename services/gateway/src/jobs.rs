//! Jobs as the API sees them: resolving a request against the model (defaults filled in, everything checked before
//! any compute), and how an event moves a job (state, monotonic progress, result).
//!
//! Invariants: a resolved request names only sizes, frame counts and fps the model supports, and carries its seed;
//! a job's progress never decreases; a job in a final state never changes again.

use std::time::SystemTime;

use prost_types::Timestamp;
use vidmesh_model::Manifest;
use vidmesh_model::Task;
use vidmesh_proto::gateway::v1::{
    Conditioning, ConditioningMode as Mode, GenerateRequest, Job, JobError, JobEvent, JobState, job_event::Event,
};

use crate::Error;
use crate::config::LimitsConfig;

/// Progress when encoding starts, denoising starts and ends, decoding ends and classification starts.
pub const PROGRESS_ENCODING: f64 = 0.01;
/// Progress when the first denoising step starts.
pub const PROGRESS_DENOISE_START: f64 = 0.03;
/// Progress when denoising ends (decoding starts).
pub const PROGRESS_DENOISE_END: f64 = 0.85;
/// Progress when decoding and storing end.
pub const PROGRESS_DECODE_END: f64 = 0.95;

/// Whether `state` is final (completed, failed or cancelled).
pub fn is_final(state: i32) -> bool {
    matches!(JobState::try_from(state), Ok(JobState::Completed | JobState::Failed | JobState::Cancelled))
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// A fresh job id: "video_" and a UUIDv7 (time-ordered, so ids sort by creation).
pub fn new_id() -> String {
    format!("video_{}", uuid::Uuid::now_v7().simple())
}

/// The longest string that may be a job id (ids from [`new_id`] are 38 bytes).
const MAX_ID_BYTES: usize = 100;

/// Whether `id` may name a job: 1 to [`MAX_ID_BYTES`] ASCII letters, digits, `_` or `-`. Anything else (`..`, `/`,
/// percent-decoded junk, control characters) names no job and is answered NotFound without asking the store.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `id` as a message quotes it: escaped, and cut to [`MAX_ID_BYTES`] characters.
pub fn quoted_id(id: &str) -> String {
    match id.char_indices().nth(MAX_ID_BYTES) {
        Some((i, _)) => format!("{:?}…", &id[..i]),
        None => format!("{id:?}"),
    }
}

fn random_seed() -> u64 {
    // UUIDv4 bits come from the OS generator; below 2^53 so the seed survives JSON clients.
    (uuid::Uuid::new_v4().as_u128() as u64) >> 11
}

/// A conditioned request's reference as the gateway found it (an upload's probe, or a previous job's video).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Whether it is an image.
    pub image: bool,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames (1 for an image).
    pub frames: u32,
}

/// The frames a conditioned request makes (an extension: its new segment), after checking the mode and the
/// reference against the bundle.
fn conditioned(m: &Manifest, c: &Conditioning, r: &Reference, req: &GenerateRequest, asked: u32) -> Result<u32, Error> {
    let bad = |msg: String| Error::InvalidArgument(msg);
    let mode = Mode::try_from(c.mode).unwrap_or(Mode::Unspecified);
    let task = match mode {
        Mode::ImageToVideo => Task::ImageToVideo,
        Mode::Edit => Task::Edit,
        Mode::Extend => Task::Extend,
        Mode::Unspecified => return Err(bad("conditioning.mode is required (IMAGE_TO_VIDEO, EDIT or EXTEND)".into())),
    };
    m.check_reference(task, r.image, (r.width, r.height), (req.width, req.height)).map_err(bad)?;
    if c.strength != 0.0 && (mode != Mode::Edit || !(c.strength > 0.0 && c.strength <= 1.0)) {
        return Err(bad(format!("strength {} applies to edits only, in (0, 1]", c.strength)));
    }
    match mode {
        Mode::Edit => m.edit_frames(r.frames, asked).map_err(bad),
        Mode::Extend => {
            if asked == 0 {
                return Err(bad("an extension needs the length of the new segment (seconds or num_frames)".into()));
            }
            Ok(m.extension(r.frames, asked).map_err(bad)?.new_frames)
        }
        _ => {
            let frames = if asked == 0 { m.video.default_frames } else { asked };
            m.check_frames(frames).map_err(|e| bad(format!("num_frames: {e}")))?;
            Ok(frames)
        }
    }
}

/// Checks `req` against the model and the limits and fills in every default (seed included); `reference` describes
/// a conditioned request's reference.
pub fn resolve(
    mut req: GenerateRequest,
    m: &Manifest,
    limits: &LimitsConfig,
    reference: Option<&Reference>,
) -> Result<GenerateRequest, Error> {
    let bad = |msg: String| Err(Error::InvalidArgument(msg));
    if req.model.is_empty() {
        req.model.clone_from(&m.model.name);
    } else if req.model != m.model.name {
        return bad(format!("unknown model {:?}; this gateway serves {:?}", req.model, m.model.name));
    }
    vidmesh_model::check_prompt("prompt", &req.prompt).map_err(Error::InvalidArgument)?;
    vidmesh_model::check_text("negative_prompt", &req.negative_prompt).map_err(Error::InvalidArgument)?;
    for (name, text) in [("prompt", &req.prompt), ("negative_prompt", &req.negative_prompt)] {
        if text.len() > limits.max_prompt_bytes {
            return bad(format!("{name} is {} bytes; at most {} are accepted", text.len(), limits.max_prompt_bytes));
        }
    }
    if !m.takes_negative() && !req.negative_prompt.is_empty() {
        return bad(format!(
            "{} takes no negative prompt (its guidance is {}); leave negative_prompt empty",
            m.model.name,
            if m.dit.guidance == vidmesh_model::GuidanceMode::Embedded { "embedded in the model" } else { "off" }
        ));
    }
    let v = &m.video;
    if let (Some(c), Some(r)) = (req.conditioning.as_mut(), reference) {
        c.source_frames = r.frames;
    }
    if (req.width, req.height) == (0, 0) {
        // A reference of a size the model makes sets it; otherwise the model's default.
        (req.width, req.height) = match reference {
            Some(r) if m.check_size(r.height, r.width).is_ok() => (r.width, r.height),
            _ => (v.default_width, v.default_height),
        };
    }
    if req.fps == 0 {
        req.fps = v.default_fps;
    }
    m.check_size(req.height, req.width).map_err(Error::InvalidArgument)?;
    m.check_fps(req.fps).map_err(Error::InvalidArgument)?;
    let fps = f64::from(req.fps);
    // The frames asked for (0 = none): exactly `seconds × fps`, never rounded to something else.
    let asked = if req.num_frames != 0 {
        req.num_frames
    } else if req.seconds != 0.0 {
        let exact = req.seconds * fps;
        if req.conditioning.as_ref().is_some_and(|c| c.mode == Mode::Extend as i32) {
            // An extension's segment is checked by the extension rule below.
            if !(exact.is_finite() && exact > 0.0 && exact.fract() == 0.0 && exact <= f64::from(u32::MAX)) {
                return bad(format!("seconds {} is not a whole number of frames at {} fps", req.seconds, req.fps));
            }
            exact as u32
        } else {
            m.frames_for_seconds(req.seconds, req.fps).map_err(Error::InvalidArgument)?
        }
    } else {
        0
    };
    req.num_frames = match (&req.conditioning, reference) {
        (None, _) => {
            let frames = if asked == 0 { v.default_frames } else { asked };
            m.check_frames(frames).map_err(|e| Error::InvalidArgument(format!("num_frames: {e}")))?;
            frames
        }
        (Some(c), Some(r)) => conditioned(m, c, r, &req, asked)?,
        (Some(_), None) => return bad("conditioning has no reference: send data or a video_id".into()),
    };
    let total = match &req.conditioning {
        // The source cut to whole latent frames, then the new segment.
        Some(c) if c.mode == Mode::Extend as i32 => {
            m.extension(c.source_frames, req.num_frames).map_err(Error::InvalidArgument)?.total
        }
        _ => req.num_frames,
    };
    req.seconds = f64::from(total) / fps;
    if let Some(c) = req.conditioning.as_mut()
        && c.mode == Mode::Edit as i32
        && c.strength == 0.0
    {
        c.strength = m.conditioning.default_strength;
    }
    // The DiT's frames: an extension's whole window.
    let dit_frames = match &req.conditioning {
        Some(c) if c.mode == Mode::Extend as i32 => {
            m.extension(c.source_frames, req.num_frames).map_err(Error::InvalidArgument)?.window
        }
        _ => req.num_frames,
    };
    let ask = vidmesh_model::Ask {
        frames: dit_frames,
        height: req.height,
        width: req.width,
        fps: req.fps,
        steps: req.num_inference_steps,
        guidance: req.guidance_scale,
        guidance_rescale: None,
        shift: None,
        scheduler: req.scheduler.clone(),
        cache: req.cache.clone(),
    };
    let plan = vidmesh_model::Plan::resolve(
        m,
        &ask,
        &vidmesh_model::Limits { max_steps: limits.max_steps, max_guidance: limits.max_guidance },
    )
    .map_err(Error::InvalidArgument)?;
    if req.preview_every > plan.steps {
        return bad(format!("preview_every {} is more than the job's {} steps", req.preview_every, plan.steps));
    }
    req.num_inference_steps = plan.steps;
    req.guidance_scale = Some(plan.guidance);
    req.scheduler = plan.scheduler;
    req.cache = plan.cache.as_str().to_string();
    req.seed.get_or_insert_with(random_seed);
    if req.idempotency_key.len() > 200 {
        return bad("idempotency_key is longer than 200 bytes".into());
    }
    vidmesh_model::check_text("idempotency_key", &req.idempotency_key).map_err(Error::InvalidArgument)?;
    Ok(req)
}

/// Moves `job` by one event: state, progress (never down), result/error, sequence, finish time.
pub fn apply(job: &mut Job, ev: &JobEvent) {
    let state = match ev.event.as_ref() {
        Some(Event::Accepted(_) | Event::Queued(_)) => JobState::Queued,
        Some(Event::Encoding(_) | Event::Denoising(_) | Event::Decoding(_) | Event::Classifying(_)) => {
            JobState::Running
        }
        Some(Event::Completed(r)) => {
            job.result = Some(r.clone());
            JobState::Completed
        }
        Some(Event::Failed(e)) => {
            job.error = Some(e.clone());
            JobState::Failed
        }
        Some(Event::Cancelled(_)) => JobState::Cancelled,
        None => JobState::try_from(job.state).unwrap_or(JobState::Queued),
    };
    job.state = state as i32;
    job.progress = job.progress.max(ev.progress);
    job.last_sequence = ev.sequence;
    if is_final(job.state) {
        job.finished_at = ev.at;
    }
}

/// A failure event in words a caller can act on.
pub fn failed(code: tonic::Code, message: impl Into<String>) -> Event {
    let code = format!("{code:?}");
    // tonic's Debug names are CamelCase ("InvalidArgument"); the API uses the gRPC names.
    let mut upper = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            upper.push('_');
        }
        upper.push(c.to_ascii_uppercase());
    }
    Event::Failed(JobError { code: upper, message: message.into() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny");
        vidmesh_model::Bundle::manifest_only(&dir).unwrap().manifest
    }

    fn req(prompt: &str) -> GenerateRequest {
        GenerateRequest { prompt: prompt.into(), ..Default::default() }
    }

    #[test]
    fn defaults_are_filled_and_seconds_round_to_a_supported_count() {
        let m = manifest();
        let l = LimitsConfig::default();
        let r = resolve(req("a red circle"), &m, &l, None).unwrap();
        assert_eq!((r.width, r.height, r.num_frames, r.fps), (64, 64, 16, 8));
        assert_eq!(r.num_inference_steps, m.scheduler.steps);
        assert!(r.seed.is_some() && r.guidance_scale == Some(m.scheduler.guidance));
        let r = resolve(GenerateRequest { seconds: 4.0, ..req("x") }, &m, &l, None).unwrap();
        assert_eq!((r.num_frames, r.seconds), (32, 4.0));
        // A duration the model does not make is refused with the ones it makes, never rounded.
        for s in [3.4, 3.0, 8.0] {
            let e = resolve(GenerateRequest { seconds: s, ..req("x") }, &m, &l, None).unwrap_err().to_string();
            assert!(e.contains("use one of 1s, 2s, 4s"), "{e}");
        }
        let r = resolve(GenerateRequest { seed: Some(7), width: 96, height: 64, ..req("x") }, &m, &l, None).unwrap();
        assert_eq!((r.seed, r.width), (Some(7), 96));
    }

    #[test]
    fn what_the_model_cannot_do_is_refused_with_the_choices() {
        let m = manifest();
        let l = LimitsConfig::default();
        let err = |r: GenerateRequest| resolve(r, &m, &l, None).unwrap_err().to_string();
        assert!(err(req(" ")).contains("prompt is required"));
        assert!(err(req("\0")).contains("prompt holds a NUL byte"));
        assert!(err(GenerateRequest { negative_prompt: "\u{7}".into(), ..req("x") }).contains("negative_prompt holds"));
        assert!(err(GenerateRequest { width: 4096, height: 4096, ..req("x") }).contains("64x64, 96x64"));
        assert!(err(GenerateRequest { num_frames: 17, ..req("x") }).contains("[8, 16, 32]"));
        assert!(err(GenerateRequest { seconds: 3600.0, ..req("x") }).contains("1s, 2s, 4s"));
        assert!(err(GenerateRequest { num_inference_steps: 100_000, ..req("x") }).contains("limit 200"));
        assert!(err(GenerateRequest { guidance_scale: Some(f32::NAN), ..req("x") }).contains("guidance"));
        assert!(err(GenerateRequest { model: "sora".into(), ..req("x") }).contains("vidmesh-tiny"));
        assert!(err(req(&"x".repeat(5000))).contains("at most 2000"));
        let e = err(GenerateRequest { scheduler: "ddim".into(), ..req("x") });
        assert!(e.contains("cannot sample") && e.contains("flow_match_euler"), "{e}");
        assert!(err(GenerateRequest { scheduler: "euler_a".into(), ..req("x") }).contains("flow_match_dpmpp_2m"));
        let r = resolve(GenerateRequest { scheduler: "flow_match_dpmpp_2m".into(), ..req("x") }, &m, &l, None).unwrap();
        assert_eq!(r.scheduler, "flow_match_dpmpp_2m");
    }

    #[test]
    fn only_plausible_ids_reach_the_store() {
        assert!(plausible_id(&new_id()) && plausible_id("video_abc-1"));
        for bad in ["", "..", "../../etc/passwd", "video_1/../x", "a\0b", "v i", "%2e%2e", &"x".repeat(101)] {
            assert!(!plausible_id(bad), "{bad:?}");
        }
        assert_eq!(quoted_id("a\0b"), "\"a\\0b\"");
        assert!(quoted_id(&"y".repeat(500)).len() < 110);
    }

    #[test]
    fn progress_is_monotonic_and_final_states_stick() {
        let mut job = Job::default();
        let ev = |seq, progress, event| JobEvent { sequence: seq, progress, event: Some(event), ..Default::default() };
        apply(&mut job, &ev(1, 0.5, Event::Encoding(Default::default())));
        apply(&mut job, &ev(2, 0.1, Event::Queued(Default::default())));
        assert_eq!((job.progress, job.state, job.last_sequence), (0.5, JobState::Queued as i32, 2));
        apply(&mut job, &ev(3, 0.6, failed(tonic::Code::InvalidArgument, "no")));
        assert!(is_final(job.state));
        assert_eq!(job.error.as_ref().unwrap().code, "INVALID_ARGUMENT");
    }

    /// A model with embedded guidance (HunyuanVideo) refuses a negative prompt instead of dropping it.
    #[test]
    fn a_negative_prompt_is_refused_where_the_model_takes_none() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/hunyuan-tiny");
        let m = vidmesh_model::Bundle::manifest_only(&dir).unwrap().manifest;
        let l = LimitsConfig::default();
        resolve(req("a cat"), &m, &l, None).unwrap();
        let err =
            resolve(GenerateRequest { negative_prompt: "blurry".into(), ..req("a cat") }, &m, &l, None).unwrap_err();
        assert!(err.to_string().contains("takes no negative prompt"), "{err}");
    }
}
