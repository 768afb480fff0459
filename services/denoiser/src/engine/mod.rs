//! The denoiser's hot path, free of gRPC: validated requests become jobs for the model thread
//! ([`batcher`]), which steps them with the DiT and streams [`Event`]s back.
//!
//! Invariants: the initial noise is the bundle's seeded generator ([`noise`]); admission is bounded by a
//! semaphore (excess is refused at once, never queued without bound); after shutdown starts no job is admitted.

pub mod batcher;
pub mod cache;
pub mod dit;
pub mod job;
pub use vidmesh_model::noise;
pub mod resident;
pub mod scheduler;
pub mod split;

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vidmesh_model::{Manifest, Onnx, Part};

use crate::config::Config;
use crate::error::Error;
use batcher::LoopParams;
pub use job::Event;
use job::{Clock, Job};
use scheduler::{Kind, Prediction, Scheduler};
use vidmesh_runtime::status::Refusal;

/// One prompt's text states as the text-encoder gave them.
#[derive(Debug, Clone)]
pub struct TextStates {
    /// [rows, hidden], rows ≤ max_tokens (= max_tokens where the bundle keeps padding states).
    pub states: Vec<f32>,
    /// Leading rows that are real tokens (the DiT's text mask).
    pub real_tokens: usize,
    /// The second encoder's pooled vector, for DiTs that take pooled text (empty otherwise).
    pub pooled: Vec<f32>,
}

impl TextStates {
    /// States whose every row is a real token, without a pooled vector.
    pub fn real(states: Vec<f32>, hidden: usize) -> Self {
        let real_tokens = states.len() / hidden.max(1);
        Self { states, real_tokens, pooled: Vec::new() }
    }
}

/// A request after validation (the server checked shapes and ranges against the manifest).
#[derive(Debug, Clone)]
pub struct Request {
    /// Latent shape [C, T', h, w].
    pub latent_shape: [usize; 4],
    /// Prompt states.
    pub prompt: TextStates,
    /// Negative-prompt states; required when guidance != 1.
    pub negative: Option<TextStates>,
    /// Noise seed.
    pub seed: u64,
    /// Steps of the full schedule.
    pub steps: u32,
    /// CFG scale.
    pub guidance: f32,
    /// Timestep shift.
    pub shift: f32,
    /// Scheduler.
    pub kind: Kind,
    /// CFG rescale φ (0: off).
    pub guidance_rescale: f32,
    /// Step-caching tier (checked against the bundle: a tier other than `off` needs `[dit.cache]`).
    pub cache: vidmesh_model::CacheTier,
    /// Frame rate (DiTs with an `fps` extra input are conditioned on it).
    pub fps: u32,
    /// Starting latents and strength in (0, 1].
    pub init: Option<(Vec<f32>, f32)>,
    /// Clean latent frames to pin: [C, T', h, w] (only the listed frames are read) and the frame indices.
    pub keyframes: Option<(Vec<f32>, Vec<usize>)>,
    /// Preview period (0 = none).
    pub preview_every: u32,
    /// Give up after this instant.
    pub deadline: Option<Instant>,
}

impl Request {
    /// Scheduler steps that will actually run: all of them, or `round(steps × strength)` (at least 1) from init
    /// latents.
    pub fn steps_to_run(&self) -> u32 {
        match &self.init {
            None => self.steps,
            Some((_, strength)) => ((self.steps as f32) * strength).round().clamp(1.0, self.steps as f32) as u32,
        }
    }
}

/// The loaded DiT and its model thread.
pub struct Denoiser {
    tx: SyncSender<Job>,
    admission: Arc<Semaphore>,
    /// The bundle's manifest (geometry, defaults, supported sizes).
    pub manifest: Manifest,
    /// Collectors.
    pub metrics: crate::metrics::Metrics,
    retry_after: Duration,
    prediction: Prediction,
    next_id: std::sync::atomic::AtomicU64,
}

impl Denoiser {
    /// Opens the bundle (sha256-checked), starts the model thread and warms it up with one step at the default
    /// size. Blocking: call from a blocking thread.
    pub fn load(config: &Config, onnx: &Onnx, registry: &prometheus::Registry) -> Result<Self, Error> {
        // The device-resident loop runs the whole graph; the host loop only the split graphs where they exist.
        let part = if config.device_loop() { Part::Dit } else { Part::DitSplit };
        let bundle = config.model.open(&[part])?;
        let m = bundle.manifest.clone();
        let prediction = Prediction::parse(&m.dit.prediction)
            .ok_or_else(|| Error::Inference(format!("dit.prediction {:?} is unknown", m.dit.prediction)))?;
        // TensorRT places tensors in CUDA memory too.
        let cuda = onnx.provider().is_gpu();
        let mut io_binding = config.device_loop();
        // The device-resident loop binds the format-1 tensor names and one transformer with a text mask.
        let resident_fits = m.dit2.is_none()
            && m.dit.names == vidmesh_model::DitNames::default()
            && m.dit.extra_inputs.is_empty()
            && m.text_encoder.dit_mask;
        if onnx.cuda_graph() && !resident_fits {
            return Err(Error::Inference(
                "onnxruntime.cuda_graph = true: this bundle's DiT (names, no text mask or two transformers) cannot \
                 step in the device-resident loop; set it to false"
                    .into(),
            ));
        }
        if io_binding && !resident_fits {
            tracing::warn!(
                "io_binding: this bundle's DiT (names, no text mask or two transformers) steps on the host path"
            );
            io_binding = false;
        }
        let dits = m
            .dits()
            .into_iter()
            .map(|(key, d)| {
                let (names, extras) = (d.names.clone(), d.extra_inputs.clone());
                let split = match &d.cache {
                    Some(spec) => Some(split::SplitDit::open(onnx, &bundle, key, spec, names.clone(), extras.clone())?),
                    None => None,
                };
                // The whole graph serves bundles without a split, and the device-resident loop (IO binding).
                let session = match (split.is_none() || io_binding, onnx.cuda_graph()) {
                    (true, true) => Some(onnx.checked_captured_session(&bundle, key, &d.component)?),
                    (true, false) => Some(onnx.checked_session(&bundle, key, &d.component)?),
                    (false, _) => None,
                };
                let dit = dit::Dit::new(session, names, extras, split);
                if onnx.cuda_graph() { dit.captured().map_err(Error::Inference) } else { Ok(dit) }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let resident = if io_binding {
            let step = resident::step_session(onnx.builder("step graph")?)
                .map_err(|e| Error::Inference(format!("step graph: {e}")))?;
            let place = resident::Placement { cuda, device_id: onnx.device_id() };
            Some(resident::Resident::new(step, place).with_cuda_graphs(onnx.cuda_graph()))
        } else {
            None
        };
        let metrics =
            crate::metrics::Metrics::register(registry).map_err(|e| Error::Inference(format!("metrics: {e}")))?;
        let params = LoopParams {
            max_batch: config.batching.max_batch,
            tokens: m.text_encoder.max_tokens,
            hidden: m.text_encoder.hidden_size,
            timestep_scale: m.dit.timestep_scale as f32,
            rounding: m.dit.timestep_rounding,
            separate: m.dit.guidance == vidmesh_model::GuidanceMode::CfgSeparate,
            boundary: m.dit2.as_ref().map(|d| (d.boundary_ratio * 1000.0) as f32),
            dynamic_cfg: m.scheduler.dynamic_cfg,
        };
        let (tx, rx) = sync_channel(config.batching.max_requests);
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("denoiser-model".into())
            .spawn(move || batcher::run(dits, resident, rx, params, thread_metrics))
            .map_err(|e| Error::Inference(format!("cannot start the model thread: {e}")))?;
        let this = Self {
            tx,
            admission: Arc::new(Semaphore::new(config.batching.max_requests)),
            manifest: m,
            metrics,
            retry_after: Duration::from_millis(config.batching.retry_after_ms),
            prediction,
            next_id: std::sync::atomic::AtomicU64::new(0),
        };
        if config.warm_up {
            this.warm_up()?;
        }
        Ok(this)
    }

    /// One step at each of the bundle's probe shapes ([`Manifest::probes`]) — two with a second transformer, so
    /// both run: loads the graphs' kernels and proves their frame axes follow the input.
    fn warm_up(&self) -> Result<(), Error> {
        let hidden = self.manifest.text_encoder.hidden_size;
        // With shift 1, an N-step schedule's last timestep is about 1000/N: enough steps to cross the boundary.
        let steps = self.manifest.dit2.as_ref().map_or(1, |d| (1.0 / d.boundary_ratio).ceil() as u32 + 1);
        for (frames, height, width) in self.manifest.probes() {
            let rows =
                if self.manifest.text_encoder.zero_pad_states { 1 } else { self.manifest.text_encoder.max_tokens };
            let pooled = vec![0.0; self.manifest.text_encoder_2.as_ref().map_or(0, |t| t.pooled_size)];
            let text = TextStates { states: vec![0.0; rows * hidden], real_tokens: 1, pooled };
            let req = Request {
                latent_shape: self.manifest.latent_shape(frames, height, width),
                prompt: text.clone(),
                negative: Some(text),
                seed: 0,
                steps,
                guidance: 2.0,
                shift: 1.0,
                kind: Kind::parse(&self.manifest.scheduler.kind).unwrap_or(Kind::FlowMatchEuler),
                guidance_rescale: 0.0,
                cache: vidmesh_model::CacheTier::Off,
                fps: self.manifest.video.default_fps,
                init: None,
                keyframes: None,
                preview_every: 0,
                deadline: None,
            };
            let fail = |e: Error| {
                Error::Inference(format!(
                    "warm-up at {frames} frames of {width}x{height} failed: {e} (a graph whose frame or size axes are \
                     not really dynamic fails here)"
                ))
            };
            let mut rx = self.submit(req).map_err(fail)?;
            let mut done = false;
            while let Some(ev) = rx.blocking_recv() {
                match ev {
                    Event::Done { .. } => {
                        done = true;
                        break;
                    }
                    Event::Failed(e) => return Err(fail(e)),
                    _ => {}
                }
            }
            if !done {
                return Err(Error::Inference("warm-up ended without a result".into()));
            }
        }
        Ok(())
    }

    /// States padded with zero rows to max_tokens, and the mask of their real tokens.
    fn pad(&self, text: &TextStates) -> (Vec<f32>, Vec<i64>) {
        let (tokens, hidden) = (self.manifest.text_encoder.max_tokens, self.manifest.text_encoder.hidden_size);
        let mut padded = vec![0.0; tokens * hidden];
        padded[..text.states.len()].copy_from_slice(&text.states);
        let mut mask = vec![0i64; tokens];
        mask[..text.real_tokens.min(tokens)].fill(1);
        (padded, mask)
    }

    /// The model's prediction type.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// Admits a request; its events arrive on the returned channel (drop it to cancel).
    pub fn submit(&self, req: Request) -> Result<UnboundedReceiver<Event>, Error> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| {
            self.metrics.outcome("rejected");
            Error::from(Refusal::overloaded("denoiser", self.retry_after))
        })?;
        let n: usize = req.latent_shape.iter().product();
        let run = req.steps_to_run() as usize;
        let noise = noise::gaussian(req.seed, n);
        let opts = scheduler::Options::for_request(&self.manifest, req.latent_shape, req.seed);
        let pin_noise = req.keyframes.as_ref().map(|_| noise.clone());
        let (schedule, mut x) = match &req.init {
            None => (Scheduler::with_options(req.kind, self.prediction, req.steps, req.shift, 0, &opts), noise),
            Some((init, _)) => {
                let skip = req.steps as usize - run;
                let s = Scheduler::with_options(req.kind, self.prediction, req.steps, req.shift, skip, &opts);
                let x = s.noised(init, &noise);
                (s, x)
            }
        };
        let pins = req.keyframes.zip(pin_noise).map(|((clean, frames), noise)| job::Pins { clean, noise, frames });
        if let Some(p) = &pins {
            p.apply(&schedule, 0, req.latent_shape, &mut x);
        }
        let (cond, cond_mask) = self.pad(&req.prompt);
        let guidance2 = self.manifest.dit2.as_ref().map_or(req.guidance, |d| d.guidance_scale);
        // Embedded guidance (the scale is a DiT input) and a scale of 1 run one row per step.
        let embedded = self.manifest.dit.guidance == vidmesh_model::GuidanceMode::Embedded;
        let one_row = embedded || (req.guidance == 1.0 && guidance2 == 1.0);
        let uncond = if one_row { None } else { req.negative.as_ref().map(|s| self.pad(s)) };
        let uncond_pooled =
            if one_row { Vec::new() } else { req.negative.as_ref().map(|s| s.pooled.clone()).unwrap_or_default() };
        let cache = self.manifest.dit.cache.as_ref().and_then(|c| c.policy(req.cache)).map(cache::StepCache::new);
        if req.cache != vidmesh_model::CacheTier::Off && cache.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{} has no step cache; use cache \"off\"",
                self.manifest.model.name
            )));
        }
        let (events, rx) = unbounded_channel();
        let job = Job {
            id: self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            latent_shape: req.latent_shape,
            cond,
            cond_mask,
            cond_pooled: req.prompt.pooled.clone(),
            uncond,
            uncond_pooled,
            guidance: req.guidance,
            guidance2,
            guidance_rescale: req.guidance_rescale,
            fps: req.fps as f32,
            // CFG rescale is not a linear update: such jobs step on the host.
            device_loop: req.kind.device_loop() && req.guidance_rescale == 0.0 && pins.is_none() && cache.is_none(),
            schedule,
            x,
            prev: Vec::new(),
            preview_every: req.preview_every,
            deadline: req.deadline,
            events,
            permit,
            clock: Clock::start(),
            pins,
            cache,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Refusal::overloaded("denoiser", self.retry_after).into()),
            Err(TrySendError::Disconnected(_)) => Err(Error::Inference("model thread stopped".into())),
        }
    }
}
