//! The gRPC face of the denoiser: validates a request against the bundle's manifest, converts it to an engine
//! request, and turns engine events into the `DenoiseEvent` stream. Dropping the stream drops the engine's event
//! receiver, which is how the model thread learns the client is gone.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _, stream};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use vidmesh_model::Mode;
use vidmesh_proto::denoiser::v1::{
    Accepted, Completed, DenoiseEvent, DenoiseRequest, Keyframes, Preview, Progress, denoise_event::Event as Ev,
    denoiser_server::Denoiser as DenoiserRpc,
};
use vidmesh_runtime::tensor::DEFAULT_CHUNK_BYTES;
use vidmesh_runtime::{Drain, TensorF32};

use crate::config::Config;
use crate::engine::scheduler::Kind;
use crate::engine::{self, Denoiser, Event};
use crate::error::Error;
use vidmesh_runtime::status::Refusal;

/// Shared by the handlers and the loader.
pub struct State {
    /// Set once the model is loaded and warm.
    pub denoiser: OnceLock<Denoiser>,
    /// Refuses new work once shutdown starts.
    pub drain: Drain,
    /// The service configuration.
    pub config: Config,
}

/// The tonic service.
#[derive(Clone)]
pub struct Service(pub Arc<State>);

type EventStream = Pin<Box<dyn Stream<Item = Result<DenoiseEvent, Status>> + Send>>;

/// Parses the `grpc-timeout` header (e.g. `250m`, `3S`) into a duration.
pub fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Checks `req` against the manifest and limits; returns the engine request and its latent shape.
pub fn validate(
    d: &Denoiser,
    cfg: &Config,
    req: &DenoiseRequest,
    deadline: Option<Instant>,
) -> Result<engine::Request, Error> {
    let m = &d.manifest;
    if !req.model.is_empty() && req.model != m.model.name {
        return Err(Refusal::UnknownModel { requested: req.model.clone(), served: m.model.name.clone() }.into());
    }
    let ask = vidmesh_model::Ask {
        frames: req.frames,
        height: req.height,
        width: req.width,
        fps: req.fps,
        steps: req.steps,
        guidance: req.guidance,
        guidance_rescale: req.guidance_rescale,
        shift: req.shift,
        scheduler: req.scheduler.clone(),
        cache: req.cache.clone(),
    };
    let limits = vidmesh_model::Limits { max_steps: cfg.max_steps, max_guidance: cfg.max_guidance };
    let plan = vidmesh_model::Plan::resolve(m, &ask, &limits).map_err(bad)?;
    let (steps, guidance, shift) = (plan.steps, plan.guidance, plan.shift);
    let kind = Kind::parse(&plan.scheduler)
        .ok_or_else(|| bad(format!("scheduler {:?} is unknown; use one of {:?}", plan.scheduler, Kind::NAMES)))?;
    let (max_tokens, hidden) = (m.text_encoder.max_tokens, m.text_encoder.hidden_size);
    // With zero_pad_states = false the DiT sees the encoder's padding states: all max_tokens rows must come.
    let rows_needed = (!m.text_encoder.zero_pad_states).then_some(max_tokens);
    let states = |field: &str, t, real: u32| -> Result<engine::TextStates, Error> {
        let t = TensorF32::from_proto(field, t)?;
        let l = match t.shape[..] {
            [l, h] if h == hidden && l <= max_tokens && rows_needed.is_none_or(|n| n == l) => l,
            _ => {
                let rows = rows_needed.map_or(format!("tokens <= {max_tokens}"), |n| n.to_string());
                return Err(bad(format!(
                    "{field} has shape {:?}; expected [{rows}, {hidden}] from the text-encoder",
                    t.shape
                )));
            }
        };
        let real = match real as usize {
            0 => l,
            r if r <= l => r,
            r => return Err(bad(format!("{field}: {r} real tokens but only {l} rows"))),
        };
        Ok(engine::TextStates { states: t.data, real_tokens: real, pooled: Vec::new() })
    };
    // DiTs that take pooled text need each prompt's pooled vector; others must not be sent one.
    let pooled_size = m
        .dit
        .extra_inputs
        .iter()
        .any(|x| x.source == "pooled_text")
        .then(|| m.text_encoder_2.as_ref().map_or(0, |t| t.pooled_size));
    let pooled = |field: &str, t: Option<&vidmesh_proto::tensor::v1::Tensor>| -> Result<Vec<f32>, Error> {
        match (pooled_size, t) {
            (None, None) => Ok(Vec::new()),
            (None, Some(_)) => Err(bad(format!("{field} is set but {} takes no pooled text", m.model.name))),
            (Some(_), None) => {
                Err(bad(format!("{field} is required by {} (the text-encoder's `pooled`)", m.model.name)))
            }
            (Some(n), Some(t)) => {
                let t = TensorF32::from_proto(field, Some(t))?;
                if t.shape != [n] {
                    return Err(bad(format!("{field} has shape {:?}; expected [{n}]", t.shape)));
                }
                Ok(t.data)
            }
        }
    };
    let mut prompt = states("prompt_states", req.prompt_states.as_ref(), req.prompt_real_tokens)?;
    prompt.pooled = pooled("prompt_pooled", req.prompt_pooled.as_ref())?;
    // Embedded guidance takes no negative prompt: its scale is a DiT input.
    let embedded = m.dit.guidance == vidmesh_model::GuidanceMode::Embedded;
    if embedded && req.negative_states.is_some() {
        return Err(bad(format!(
            "{} has embedded guidance and takes no negative prompt; leave negative_states unset",
            m.model.name
        )));
    }
    let negative = match (&req.negative_states, guidance == 1.0 || embedded) {
        (Some(t), _) => {
            let mut s = states("negative_states", Some(t), req.negative_real_tokens)?;
            s.pooled = pooled("negative_pooled", req.negative_pooled.as_ref())?;
            Some(s)
        }
        (None, true) => None,
        (None, false) => {
            return Err(bad("negative_states is required when guidance != 1 (encode \"\" for plain CFG)".into()));
        }
    };
    let latent_shape = plan.latent_shape;
    let init = match &req.init_latents {
        None if req.strength != 0.0 => return Err(bad("strength is set but init_latents is missing".into())),
        None => None,
        Some(t) => {
            let t = TensorF32::from_proto("init_latents", Some(t))?;
            if t.shape != latent_shape {
                return Err(bad(format!("init_latents has shape {:?}; this request needs {latent_shape:?}", t.shape)));
            }
            if !(req.strength > 0.0 && req.strength <= 1.0) {
                return Err(bad(format!("strength {} must be in (0, 1] with init_latents", req.strength)));
            }
            m.check_mode(Mode::Sdedit, "init_latents (video-to-video)").map_err(bad)?;
            Some((t.data, req.strength))
        }
    };
    let (keyframes, init) = match &req.keyframes {
        None => (None, init),
        Some(k) => {
            m.check_mode(Mode::Keyframes, "keyframes").map_err(bad)?;
            let (clean, positions) = keyframes(k, latent_shape)?;
            let init = match (k.strength, init) {
                (s, None) if s > 0.0 && s < 1.0 => Some((engine::job::spread(&clean, &positions, latent_shape), s)),
                (s, init) if s == 0.0 || s == 1.0 => init,
                (s, None) => return Err(bad(format!("keyframes.strength {s} must be in [0, 1]"))),
                (_, Some(_)) => return Err(bad("keyframes.strength and init_latents exclude each other".into())),
            };
            (Some((clean, positions)), init)
        }
    };
    if req.preview_every > steps {
        return Err(bad(format!("preview_every {} exceeds steps {steps}", req.preview_every)));
    }
    Ok(engine::Request {
        latent_shape,
        prompt,
        negative,
        seed: req.seed,
        steps,
        guidance,
        shift,
        kind,
        guidance_rescale: plan.guidance_rescale,
        cache: plan.cache,
        fps: plan.fps,
        init,
        keyframes,
        preview_every: req.preview_every,
        deadline,
    })
}

/// Keyframes [C, K, h, w] at K increasing positions, laid out in a [C, T', h, w] buffer for the engine.
fn keyframes(k: &Keyframes, shape: [usize; 4]) -> Result<(Vec<f32>, Vec<usize>), Error> {
    let t = TensorF32::from_proto("keyframes.latents", k.latents.as_ref())?;
    let [c, frames, h, w] = shape;
    let n = k.positions.len();
    if t.shape != [c, n, h, w] {
        return Err(bad(format!(
            "keyframes.latents has shape {:?}; with {n} positions this request needs [{c}, {n}, {h}, {w}]",
            t.shape
        )));
    }
    if n == 0 || !k.positions.windows(2).all(|p| p[0] < p[1]) || k.positions[n - 1] as usize >= frames {
        return Err(bad(format!(
            "keyframes.positions {:?} must be 1 or more increasing latent frame indices below {frames}",
            k.positions
        )));
    }
    if t.data.iter().any(|x| !x.is_finite()) {
        return Err(bad("keyframes.latents holds NaN or infinite values".into()));
    }
    let positions: Vec<usize> = k.positions.iter().map(|&p| p as usize).collect();
    Ok((engine::job::place(&t.data, &positions, shape), positions))
}

fn to_proto(ev: Event, shape: [usize; 4], model: &(String, String)) -> Vec<Result<DenoiseEvent, Status>> {
    let wrap = |e: Ev| Ok(DenoiseEvent { event: Some(e) });
    match ev {
        Event::Progress { step, total, sigma, elapsed, eta, batch_requests } => vec![wrap(Ev::Progress(Progress {
            step,
            total,
            sigma,
            elapsed_ms: elapsed.as_millis() as u64,
            eta_ms: eta.as_millis() as u64,
            batch_requests,
        }))],
        Event::Preview { step, x0 } => {
            vec![wrap(Ev::Preview(Preview { step, x0: Some(TensorF32::new(shape.to_vec(), x0).to_proto()) }))]
        }
        Event::Done { latents, steps, elapsed } => {
            let mut out: Vec<_> = TensorF32::new(shape.to_vec(), latents)
                .to_chunks(DEFAULT_CHUNK_BYTES)
                .into_iter()
                .map(|c| wrap(Ev::Latents(c)))
                .collect();
            out.push(wrap(Ev::Completed(Completed {
                steps,
                elapsed_ms: elapsed.as_millis() as u64,
                model: model.0.clone(),
                model_version: model.1.clone(),
            })));
            out
        }
        Event::Failed(e) => vec![Err(e.into())],
    }
}

#[tonic::async_trait]
impl DenoiserRpc for Service {
    type DenoiseStream = EventStream;

    async fn denoise(&self, request: Request<DenoiseRequest>) -> Result<Response<EventStream>, Status> {
        let d = self.0.drain.ready(&self.0.denoiser)?;
        let deadline = grpc_timeout(request.metadata()).map(|t| Instant::now() + t);
        let req = validate(d, &self.0.config, request.get_ref(), deadline)?;
        let shape = req.latent_shape;
        let total = req.steps_to_run();
        let rx = d.submit(req)?;
        let model = (d.manifest.model.name.clone(), d.manifest.model.version.clone());
        let accepted = DenoiseEvent {
            event: Some(Ev::Accepted(Accepted {
                total_steps: total,
                latent_shape: shape.iter().map(|&x| x as u64).collect(),
            })),
        };
        let events = UnboundedReceiverStream::new(rx).flat_map(move |ev| stream::iter(to_proto(ev, shape, &model)));
        Ok(Response::new(Box::pin(stream::once(async move { Ok(accepted) }).chain(events))))
    }
}
