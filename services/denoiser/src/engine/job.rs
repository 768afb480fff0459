//! A denoising job as the model thread holds it, and the events its client receives (shared by the batching loop
//! and the device-resident loop).

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::scheduler::Scheduler;
use crate::error::Error;

/// What a job's client receives.
#[derive(Debug)]
pub enum Event {
    /// A step finished.
    Progress {
        /// Steps done (1-based).
        step: u32,
        /// Steps in all.
        total: u32,
        /// Noise level reached.
        sigma: f32,
        /// Since admission.
        elapsed: Duration,
        /// Estimated time left.
        eta: Duration,
        /// Jobs in this step's DiT call.
        batch_requests: u32,
    },
    /// x0 estimate after `step`.
    Preview {
        /// The step.
        step: u32,
        /// Latents [C, T', h, w].
        x0: Vec<f32>,
    },
    /// Final latents.
    Done {
        /// Latents [C, T', h, w], scaled latent space.
        latents: Vec<f32>,
        /// Steps run.
        steps: u32,
        /// Since admission.
        elapsed: Duration,
    },
    /// The job failed.
    Failed(Error),
}

/// One admitted request.
pub struct Job {
    /// Unique per engine (the device-resident loop keys its state by it).
    pub id: u64,
    /// Latent shape [C, T', h, w]: the batching bucket.
    pub latent_shape: [usize; 4],
    /// Prompt states padded to max_tokens × hidden.
    pub cond: Vec<f32>,
    /// Prompt mask (max_tokens).
    pub cond_mask: Vec<i64>,
    /// The prompt's pooled vector (DiTs with pooled text; empty otherwise).
    pub cond_pooled: Vec<f32>,
    /// Negative-prompt states and mask; `None` when guidance is 1 or embedded (one row per step).
    pub uncond: Option<(Vec<f32>, Vec<i64>)>,
    /// The negative prompt's pooled vector (with `uncond`, for DiTs with pooled text).
    pub uncond_pooled: Vec<f32>,
    /// CFG scale (of the first transformer).
    pub guidance: f32,
    /// CFG scale of the second transformer (bundles with `[dit2]`).
    pub guidance2: f32,
    /// Frame rate, for DiTs with an `fps` extra input.
    pub fps: f32,
    /// CFG rescale φ (0: off).
    pub guidance_rescale: f32,
    /// Whether the device-resident loop can step this job's scheduler (its update is the 3-term linear form).
    pub device_loop: bool,
    /// Noise levels.
    pub schedule: Scheduler,
    /// Current latents (host copy; with the device-resident loop, current whenever the job is not on the device).
    pub x: Vec<f32>,
    /// Previous step's clean estimate, for the device-resident loop's multistep update (empty = none yet).
    pub prev: Vec<f32>,
    /// Preview period in steps (0 = none).
    pub preview_every: u32,
    /// Give up after this instant.
    pub deadline: Option<Instant>,
    /// The client's event channel; closed = the client went away.
    pub events: UnboundedSender<Event>,
    /// Admission permit, released when the job is dropped.
    pub permit: tokio::sync::OwnedSemaphorePermit,
    /// Where the job is in its run.
    pub clock: Clock,
    /// Pinned latent frames (keyframes conditioning); such jobs step on the host.
    pub pins: Option<Pins>,
    /// Step caching (tiers other than `off`); such jobs step on the host with the split graphs.
    pub cache: Option<super::cache::StepCache>,
}

/// Latent frames pinned to clean values (RePaint-style): before every step they are set to the clean values noised
/// to that step's level with the job's own noise, so after the last step they are exactly the clean values.
pub struct Pins {
    /// [C, T', h, w] with the pinned frames' clean values (others unused).
    pub clean: Vec<f32>,
    /// The job's initial noise, same layout.
    pub noise: Vec<f32>,
    /// Pinned latent frame indices.
    pub frames: Vec<usize>,
}

/// Each latent frame of `clean` ([C, T', h, w]) set to its nearest pinned frame: the last one at or before it,
/// else the first after it.
pub fn spread(clean: &[f32], positions: &[usize], shape: [usize; 4]) -> Vec<f32> {
    let [c, t, h, w] = shape;
    let plane = h * w;
    let mut out = vec![0.0; clean.len()];
    for f in 0..t {
        let from = positions.iter().rev().find(|&&p| p <= f).or(positions.first()).copied().unwrap_or(f);
        for ch in 0..c {
            let (src, dst) = ((ch * t + from) * plane, (ch * t + f) * plane);
            out[dst..dst + plane].copy_from_slice(&clean[src..src + plane]);
        }
    }
    out
}

/// Pinned frames `pinned` ([C, K, h, w], K = `positions.len()`) laid out at their positions in a [C, T', h, w]
/// buffer of `shape` (the other frames zero).
pub fn place(pinned: &[f32], positions: &[usize], shape: [usize; 4]) -> Vec<f32> {
    let [c, t, h, w] = shape;
    let (n, plane) = (positions.len(), h * w);
    let mut clean = vec![0.0; c * t * plane];
    for ch in 0..c {
        for (j, &f) in positions.iter().enumerate() {
            let (src, dst) = ((ch * n + j) * plane, (ch * t + f) * plane);
            clean[dst..dst + plane].copy_from_slice(&pinned[src..src + plane]);
        }
    }
    clean
}

impl Pins {
    /// Sets the pinned frames of `x` ([C, T', h, w]) to their clean values at noise level `i` of `schedule`.
    pub fn apply(&self, schedule: &Scheduler, i: usize, shape: [usize; 4], x: &mut [f32]) {
        let [c, t, h, w] = shape;
        let plane = h * w;
        for ch in 0..c {
            for &f in &self.frames {
                let r = (ch * t + f) * plane..(ch * t + f + 1) * plane;
                schedule.noise_into(i, &self.clean[r.clone()], &self.noise[r.clone()], &mut x[r]);
            }
        }
    }
}

/// A job's position and timing; starts at admission.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Admission time (elapsed and ETA count from here, queueing included).
    pub admitted: Instant,
    /// Steps done.
    pub(super) step: usize,
    /// When its last step ran.
    pub(super) last_run: Instant,
}

impl Clock {
    /// A clock at step 0, admitted now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self { admitted: now, step: 0, last_run: now }
    }
}
