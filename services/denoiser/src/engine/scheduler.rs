//! Schedulers: the noise levels of a run and the update from one level to the next given the (guided) model
//! output. Pure arithmetic on f32 slices; knows nothing of ONNX or gRPC. Each kind reproduces the diffusers
//! scheduler of the same family (checked on recorded model outputs: tests/schedulers.rs), doing its per-step
//! arithmetic in f32 in the same order as diffusers does with torch.
//!
//! - `flow_match_euler` (rectified flow; diffusers FlowMatchEulerDiscreteScheduler with static shift, sigmas
//!   `u_i = 1 - i/N` shifted): `x += (sigma_{i+1} - sigma_i)·v`. With a resolution-dependent μ
//!   ([`Options::mu`]) and optional terminal stretch it is LTX-Video's schedule instead ([`dynamic_flow_sigmas`]).
//! - `cogvideox_ddim`, `cogvideox_dpm` (CogVideoX's DDIM and stochastic DPM-Solver++ variants on zero-terminal-SNR
//!   v-prediction): see [`cogvideox`].
//! - `flow_match_dpmpp_2m` (diffusers DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint,
//!   `use_flow_sigmas`, `flow_shift`, final sigma 0): data-prediction multistep solver for flow models.
//! - `ddim` (DDIMScheduler, eta 0, SD configuration: scaled-linear betas 0.00085..0.012 over 1000 steps,
//!   "leading" spacing, steps_offset 1, set_alpha_to_one false) for epsilon and v models.
//! - `dpmpp_2m` (DPMSolverMultistepScheduler, dpmsolver++ order 2 midpoint, same betas, "linspace" spacing,
//!   final sigma 0) for epsilon and v models.
//! - `unipc_flow` (diffusers UniPCMultistepScheduler as Wan 2.1 / 2.2 configure it: flow_prediction,
//!   `use_flow_sigmas`, `flow_shift`, bh2, solver order 2, `predict_x0`, `lower_order_final`, corrector on every
//!   step, final sigma 0): a predictor-corrector multistep solver for flow models. Its update needs the previous
//!   step's sample and the two previous clean estimates, so it is not of the linear form [`StepCoefficients`] and
//!   runs on the host loop only ([`Kind::device_loop`]).
//!
//! Invariant: a scheduler is created for one request and stepped in order i = 0..steps-1 exactly once each.

/// What the model predicts (manifest `dit.prediction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// Rectified-flow velocity `noise - x0`.
    FlowVelocity,
    /// The added noise.
    Epsilon,
    /// v = alpha·noise − sigma·x0.
    V,
}

impl Prediction {
    /// Parses the manifest name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "flow_velocity" => Some(Self::FlowVelocity),
            "epsilon" => Some(Self::Epsilon),
            "v" => Some(Self::V),
            _ => None,
        }
    }
}

/// Scheduler kinds this build implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flow matching, Euler, with timestep shift.
    FlowMatchEuler,
    /// Flow matching, DPM-Solver++(2M).
    FlowMatchDpmpp2m,
    /// DDIM (epsilon or v models).
    Ddim,
    /// DPM-Solver++(2M) (epsilon or v models).
    Dpmpp2m,
    /// UniPC (bh2, order 2, predictor-corrector) on flow sigmas, as Wan 2.1 / 2.2 sample (flow models).
    UniPcFlow,
    /// CogVideoX's DDIM (CogVideoX 2B; v models).
    CogVideoXDdim,
    /// CogVideoX's stochastic DPM-Solver++ (CogVideoX 5B / 1.5; v models).
    CogVideoXDpm,
}

impl Kind {
    /// Every accepted name, for error messages.
    pub const NAMES: &'static [&'static str] = vidmesh_model::SCHEDULERS;

    /// Parses a manifest/request name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "flow_match_euler" => Some(Self::FlowMatchEuler),
            "flow_match_dpmpp_2m" => Some(Self::FlowMatchDpmpp2m),
            "ddim" => Some(Self::Ddim),
            "dpmpp_2m" => Some(Self::Dpmpp2m),
            "unipc_flow" => Some(Self::UniPcFlow),
            "cogvideox_ddim" => Some(Self::CogVideoXDdim),
            "cogvideox_dpm" => Some(Self::CogVideoXDpm),
            _ => None,
        }
    }

    /// Whether this scheduler can drive a model with `prediction`.
    pub fn supports(self, prediction: Prediction) -> bool {
        matches!(
            (self, prediction),
            (Self::FlowMatchEuler | Self::FlowMatchDpmpp2m | Self::UniPcFlow, Prediction::FlowVelocity)
                | (Self::Ddim | Self::Dpmpp2m, Prediction::Epsilon | Prediction::V)
                | (Self::CogVideoXDdim | Self::CogVideoXDpm, Prediction::V)
        )
    }

    /// Whether every step of this kind is a [`StepCoefficients`] update, so the device-resident loop can run it
    /// ([`Scheduler::coefficients`]). False for `unipc_flow`: its corrector needs the previous step's sample and
    /// its predictor/corrector the two previous clean estimates (not linear in x, m and one previous estimate);
    /// such jobs run on the host, calling [`Scheduler::step`].
    pub fn device_loop(self) -> bool {
        !matches!(self, Self::UniPcFlow | Self::CogVideoXDdim | Self::CogVideoXDpm)
    }
}

pub mod cogvideox;
mod sigmas;
mod unipc;

use cogvideox::Cog;
use sigmas::dpm_flow_sigmas;
pub use sigmas::{dynamic_flow_sigmas, flow_sigmas, sd_alphas_cumprod};

use unipc::unipc_flow_sigmas;

const TRAIN_STEPS: usize = 1000;

/// Family settings of a schedule beyond kind, steps and shift (manifest `[scheduler]`, request seed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    /// μ of a resolution-dependent shift (`flow_match_euler`; replaces the static shift).
    pub mu: Option<f64>,
    /// The last sigma the shifted schedule is stretched to (`flow_match_euler` with `mu`).
    pub shift_terminal: Option<f64>,
    /// The cogvideox kinds' SNR shift (1 when unset).
    pub snr_shift_scale: Option<f64>,
    /// Seed of a stochastic sampler's per-step noise (`cogvideox_dpm`).
    pub seed: u64,
}

impl Options {
    /// The options of a request of `latent_shape` and `seed` on bundle `m` (μ from its latent token count where
    /// the bundle's shift is dynamic).
    pub fn for_request(m: &vidmesh_model::Manifest, latent_shape: [usize; 4], seed: u64) -> Self {
        let s = &m.scheduler;
        let [_, t, h, w] = latent_shape;
        let [pt, ph, pw] = m.dit.patch_size;
        Self {
            mu: s.dynamic_shift.map(|d| d.mu((t / pt) * (h / ph) * (w / pw))),
            shift_terminal: s.shift_terminal,
            snr_shift_scale: s.snr_shift_scale,
            seed,
        }
    }
}

/// Step `i` of a device-loop kind ([`Kind::device_loop`]) as one linear update, for the device-resident loop
/// (engine::resident): with `m` the guided model output and `prev` the previous step's clean estimate,
/// `x_next = a·x + b·m + c·prev` and `x0 = p·x + q·m` (this step's clean estimate, the next step's `prev`).
/// Every such kind's update is linear in (x, m, prev); folding its constants changes only float rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    /// Weight of the current latents.
    pub a: f32,
    /// Weight of the guided model output.
    pub b: f32,
    /// Weight of the previous clean estimate (second-order multistep only; 0 otherwise).
    pub c: f32,
    /// Clean estimate: weight of the latents.
    pub p: f32,
    /// Clean estimate: weight of the model output.
    pub q: f32,
}

/// One request's scheduler.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kind: Kind,
    prediction: Prediction,
    /// The model's timestep input per step (before the manifest's timestep scale for flow kinds).
    timesteps: Vec<f32>,
    /// diffusers' integer timestep per step where its model input is an integer (UniPC, DDPM kinds); else empty.
    int_timesteps: Vec<u32>,
    /// Noise level per step boundary (`steps + 1` values): flow sigma, or sqrt((1-ᾱ)/ᾱ) for DDPM kinds.
    pub sigmas: Vec<f32>,
    /// ᾱ at each step's timestep and after the last step (DDIM).
    alphas: Vec<f32>,
    /// Last converted output (x0) for the second-order update.
    prev_x0: Option<Vec<f32>>,
    /// UniPC: the converted output (x0) of the step before `prev_x0`'s.
    prev2_x0: Option<Vec<f32>>,
    /// UniPC: the previous step's (corrected) sample, which this step's corrector updates.
    last_sample: Option<Vec<f32>>,
    /// UniPC: the order of the previous step's predictor (the order of this step's corrector).
    last_order: usize,
    /// The cogvideox kinds' state.
    cog: Option<Cog>,
    /// Steps skipped at the start (strength < 1): step i here is step `skip + i` of the full schedule.
    skip: usize,
}

impl Scheduler {
    /// A scheduler of `steps` steps, started `skip` steps in (strength < 1; at most `steps - 1`).
    ///
    /// A skip is diffusers' `set_begin_index(skip)`: the same schedule as a full run, entered at step `skip` with
    /// no multistep history (the first step taken is first order, as at the start of a full run; the last-steps
    /// order reduction still counts from the end of the full schedule).
    pub fn new(kind: Kind, prediction: Prediction, steps: u32, shift: f32, skip: usize) -> Self {
        Self::with_options(kind, prediction, steps, shift, skip, &Options::default())
    }

    /// [`Scheduler::new`] with a family's [`Options`].
    pub fn with_options(kind: Kind, prediction: Prediction, steps: u32, shift: f32, skip: usize, o: &Options) -> Self {
        let mut n = steps as usize;
        let mut int_timesteps = vec![];
        let mut cog = None;
        let (timesteps, sigmas, alphas) = match kind {
            Kind::FlowMatchEuler => {
                let s = match o.mu {
                    Some(mu) => dynamic_flow_sigmas(steps, mu, o.shift_terminal),
                    None => flow_sigmas(steps, shift),
                };
                (s[..n].to_vec(), s, vec![])
            }
            Kind::CogVideoXDdim | Kind::CogVideoXDpm => {
                let c = Cog::new(kind == Kind::CogVideoXDpm, n, o.snr_shift_scale.unwrap_or(1.0), 0, o.seed);
                n = c.timesteps.len();
                let mut alphas: Vec<f32> = (0..n).map(|j| c.alpha_at(j) as f32).collect();
                alphas.push(1.0);
                let sigmas = alphas.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect();
                int_timesteps.clone_from(&c.timesteps);
                cog = Some(c);
                (int_timesteps.iter().map(|&t| t as f32).collect(), sigmas, alphas)
            }
            Kind::FlowMatchDpmpp2m => {
                let s = dpm_flow_sigmas(n, f64::from(shift));
                (s[..n].to_vec(), s, vec![])
            }
            Kind::UniPcFlow => {
                let (s, t) = unipc_flow_sigmas(n, f64::from(shift));
                int_timesteps = t;
                (s[..n].to_vec(), s, vec![])
            }
            Kind::Ddim => {
                let ac = sd_alphas_cumprod();
                let ratio = TRAIN_STEPS / n;
                let t: Vec<usize> = (0..n).rev().map(|i| i * ratio + 1).collect();
                let mut alphas: Vec<f32> = t.iter().map(|&t| ac[t]).collect();
                alphas.push(ac[0]); // set_alpha_to_one = false: the final "previous" alpha is ᾱ_0
                let sigmas = alphas.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect();
                int_timesteps = t.iter().map(|&t| t as u32).collect();
                (t.iter().map(|&t| t as f32).collect(), sigmas, alphas)
            }
            Kind::Dpmpp2m => {
                let ac = sd_alphas_cumprod();
                let last = (TRAIN_STEPS - 1) as f64;
                let t: Vec<usize> = (0..=n)
                    .map(|i| if i == n { last } else { i as f64 * (last / n as f64) })
                    .map(|x| x.round_ties_even() as usize)
                    .rev()
                    .take(n)
                    .collect();
                let mut sigmas: Vec<f32> = t.iter().map(|&t| ((1.0 - ac[t]) / ac[t]).sqrt()).collect();
                sigmas.push(0.0);
                int_timesteps = t.iter().map(|&t| t as u32).collect();
                (t.iter().map(|&t| t as f32).collect(), sigmas, vec![])
            }
        };
        let skip = skip.min(n.saturating_sub(1));
        Self {
            kind,
            prediction,
            timesteps: timesteps[skip..].to_vec(),
            sigmas: sigmas[skip..].to_vec(),
            alphas: if alphas.is_empty() { alphas } else { alphas[skip..].to_vec() },
            int_timesteps: if int_timesteps.is_empty() { int_timesteps } else { int_timesteps[skip..].to_vec() },
            prev_x0: None,
            prev2_x0: None,
            last_sample: None,
            last_order: 0,
            cog: cog.map(|c| c.starting_at(skip)),
            skip,
        }
    }

    /// The CFG scale of step `i` for a request's `guidance`: as given, or CogVideoX's dynamic CFG where the
    /// bundle's `scheduler.dynamic_cfg` is set (cogvideox kinds only; others ignore `dynamic`).
    pub fn guidance(&self, i: usize, guidance: f32, dynamic: bool) -> f32 {
        match (&self.cog, dynamic) {
            (Some(c), true) => c.dynamic_guidance(self.skip + i, guidance),
            _ => guidance,
        }
    }

    /// Steps to run.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The model's timestep input at step `i` (flow kinds are scaled by the manifest's timestep_scale).
    ///
    /// For every flow kind, `unipc_flow` included, this is the continuous `sigma × timestep_scale`, so one bundle
    /// field means the same thing whatever the scheduler. diffusers' UniPC (and DPM-Solver) pipelines instead feed
    /// the model `int64(sigma·1000)` — e.g. 999 rather than 999.999 at the first step — which
    /// [`Scheduler::diffusers_timestep`] returns exactly; a caller reproducing a diffusers pipeline (Wan, whose
    /// bundles use timestep_scale 1000) passes that value instead. The solver arithmetic is the same either way.
    pub fn timestep(&self, i: usize, timestep_scale: f32) -> f32 {
        match self.kind {
            Kind::FlowMatchEuler | Kind::FlowMatchDpmpp2m | Kind::UniPcFlow => self.timesteps[i] * timestep_scale,
            Kind::Ddim | Kind::Dpmpp2m | Kind::CogVideoXDdim | Kind::CogVideoXDpm => self.timesteps[i],
        }
    }

    /// The DiT's timestep input at step `i` as the bundle says (`dit.timestep_scale`, `dit.timestep_rounding`):
    /// with `trunc` at scale 1000 and a kind diffusers feeds integers, exactly [`Scheduler::diffusers_timestep`].
    pub fn model_timestep(&self, i: usize, timestep_scale: f32, rounding: vidmesh_model::TimestepRounding) -> f32 {
        match (rounding, self.diffusers_timestep(i)) {
            // diffusers truncates σ·1000 computed in f64; truncating the f32 product could land one off.
            (vidmesh_model::TimestepRounding::Trunc, Some(t)) if timestep_scale == 1000.0 => t as f32,
            _ => rounding.apply(self.timestep(i, timestep_scale)),
        }
    }

    /// The integer timestep diffusers passes its model at step `i`, where it passes an integer this scheduler
    /// reproduces: `unipc_flow` (`int64(sigma·1000)` of the float64 sigma, before its rounding to f32 — the f32
    /// sigma times 1000 can truncate one off), `ddim` and `dpmpp_2m` (equal to [`Scheduler::timestep`]). `None`
    /// for `flow_match_euler` (diffusers passes the float `sigma·1000`) and `flow_match_dpmpp_2m` (not recorded).
    /// Exact in f32 (< 1000), so `diffusers_timestep(i)? as f32` is the model input.
    pub fn diffusers_timestep(&self, i: usize) -> Option<u32> {
        self.int_timesteps.get(i).copied()
    }

    /// (alpha_t, sigma_t) of DPM-Solver for noise level `sigma`.
    fn alpha_sigma(&self, sigma: f32) -> (f32, f32) {
        if self.prediction == Prediction::FlowVelocity {
            (1.0 - sigma, sigma)
        } else {
            let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
            (alpha, sigma * alpha)
        }
    }

    /// The clean-latent estimate at step `i` from the model output.
    pub fn x0(&self, i: usize, x: &[f32], out: &[f32]) -> Vec<f32> {
        if let Some(c) = &self.cog {
            return c.x0(self.skip + i, x, out);
        }
        match (self.kind, self.prediction) {
            (Kind::Ddim, p) => self.ddim_x0_eps(i, x, out, p).0,
            (_, Prediction::FlowVelocity) => {
                let s = self.sigmas[i];
                x.iter().zip(out).map(|(x, v)| x - s * v).collect()
            }
            (_, Prediction::Epsilon) => {
                let (a, s) = self.alpha_sigma(self.sigmas[i]);
                x.iter().zip(out).map(|(x, e)| (x - s * e) / a).collect()
            }
            (_, Prediction::V) => {
                let (a, s) = self.alpha_sigma(self.sigmas[i]);
                x.iter().zip(out).map(|(x, v)| a * x - s * v).collect()
            }
        }
    }

    fn ddim_x0_eps(&self, i: usize, x: &[f32], out: &[f32], p: Prediction) -> (Vec<f32>, Vec<f32>) {
        let a = self.alphas[i];
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        match p {
            Prediction::V => (
                x.iter().zip(out).map(|(x, v)| sa * x - sb * v).collect(),
                x.iter().zip(out).map(|(x, v)| sa * v + sb * x).collect(),
            ),
            _ => (x.iter().zip(out).map(|(x, e)| (x - sb * e) / sa).collect(), out.to_vec()),
        }
    }

    /// Advances `x` from step `i` to step `i + 1` with model output `out`.
    pub fn step(&mut self, i: usize, x: &mut [f32], out: &[f32]) {
        match self.kind {
            Kind::FlowMatchEuler => {
                let dt = self.sigmas[i + 1] - self.sigmas[i];
                for (x, v) in x.iter_mut().zip(out) {
                    *x += dt * v;
                }
            }
            Kind::Ddim => {
                let (x0, eps) = self.ddim_x0_eps(i, x, out, self.prediction);
                let a_prev = self.alphas[i + 1];
                let (c0, c1) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
                for ((x, x0), e) in x.iter_mut().zip(&x0).zip(&eps) {
                    *x = c0 * x0 + c1 * e;
                }
            }
            Kind::FlowMatchDpmpp2m | Kind::Dpmpp2m => self.dpmpp_2m(i, x, out),
            Kind::UniPcFlow => self.unipc(i, x, out),
            Kind::CogVideoXDdim | Kind::CogVideoXDpm => {
                let skip = self.skip;
                if let Some(c) = self.cog.as_mut() {
                    c.step(skip + i, x, out);
                }
            }
        }
    }

    /// log(alpha/sigma) at step boundary `j` (DPM-Solver's lambda).
    fn lambda(&self, j: usize) -> f32 {
        let (a, s) = self.alpha_sigma(self.sigmas[j]);
        a.ln() - s.ln()
    }

    /// DPM-Solver++ step `i`'s constants: (c_x, c_d, h) with x' = c_x·x − c_d·D.
    fn dpm_constants(&self, i: usize) -> (f32, f32, f32) {
        let (alpha_t, sigma_t) = self.alpha_sigma(self.sigmas[i + 1]);
        let (_, sigma_s0) = self.alpha_sigma(self.sigmas[i]);
        let h = self.lambda(i + 1) - self.lambda(i);
        (sigma_t / sigma_s0, alpha_t * ((-h).exp() - 1.0), h)
    }

    fn dpmpp_2m(&mut self, i: usize, x: &mut [f32], out: &[f32]) {
        let m0 = self.x0(i, x, out);
        let (c_x, c_d, h) = self.dpm_constants(i);
        let last = i + 1 == self.steps();
        match self.prev_x0.as_ref().filter(|_| !last) {
            None => {
                for (x, d0) in x.iter_mut().zip(&m0) {
                    *x = c_x * *x - c_d * d0;
                }
            }
            Some(m1) => {
                let h0 = self.lambda(i) - self.lambda(i - 1);
                let inv_r0 = 1.0 / (h0 / h);
                let c_half = 0.5 * c_d;
                for ((x, d0), m1) in x.iter_mut().zip(&m0).zip(m1) {
                    let d1 = inv_r0 * (d0 - m1);
                    *x = c_x * *x - c_d * d0 - c_half * d1;
                }
            }
        }
        self.prev_x0 = Some(m0);
    }

    /// Step `i` as [`StepCoefficients`]; the same update as [`Scheduler::step`] (whose multistep memory is used
    /// when `i > 0`, exactly as `step` uses it after its first call), up to float rounding.
    ///
    /// Only for kinds with [`Kind::device_loop`]: `unipc_flow`'s update has no such form. Called for it anyway
    /// (a bug in the caller; debug builds panic), it returns UniPC's first-order predictor without the corrector —
    /// a valid flow sampler, but not diffusers' UniPC.
    pub fn coefficients(&self, i: usize) -> StepCoefficients {
        debug_assert!(self.kind.device_loop(), "{:?} has no device-loop coefficients; use step()", self.kind);
        // The clean estimate x0 = p·x + q·m of `x0()` / `ddim_x0_eps()`.
        let (p, q) = match (self.kind, self.prediction) {
            (Kind::Ddim, Prediction::V) => {
                let a = self.alphas[i];
                (a.sqrt(), -(1.0 - a).sqrt())
            }
            (Kind::Ddim, _) => {
                let a = self.alphas[i];
                (1.0 / a.sqrt(), -(1.0 - a).sqrt() / a.sqrt())
            }
            (_, Prediction::FlowVelocity) => (1.0, -self.sigmas[i]),
            (_, Prediction::Epsilon) => {
                let (a, s) = self.alpha_sigma(self.sigmas[i]);
                (1.0 / a, -s / a)
            }
            (_, Prediction::V) => {
                let (a, s) = self.alpha_sigma(self.sigmas[i]);
                (a, -s)
            }
        };
        let (a, b, c) = match self.kind {
            Kind::FlowMatchEuler => (1.0, self.sigmas[i + 1] - self.sigmas[i], 0.0),
            Kind::UniPcFlow => {
                let (c_x, c_m, ..) = self.unipc_constants(i, i + 1);
                (c_x - c_m * p, -c_m * q, 0.0)
            }
            // Not device-loop kinds (their steps read ᾱ at non-adjacent timesteps and, for DPM, add noise); as
            // for UniPC, a caller that asks anyway gets a plain DDIM step between this step's ᾱ and the next's.
            Kind::CogVideoXDdim | Kind::CogVideoXDpm => {
                let ap = self.alphas[i + 1];
                let (c0, c1) = (ap.sqrt(), (1.0 - ap).sqrt());
                let (sa, sb) = (self.alphas[i].sqrt(), (1.0 - self.alphas[i]).sqrt());
                (c0 * sa + c1 * sb, c1 * sa - c0 * sb, 0.0)
            }
            Kind::Ddim => {
                let ap = self.alphas[i + 1];
                let (c0, c1) = (ap.sqrt(), (1.0 - ap).sqrt());
                let (sa, sb) = (self.alphas[i].sqrt(), (1.0 - self.alphas[i]).sqrt());
                match self.prediction {
                    // eps = sa·m + sb·x
                    Prediction::V => (c0 * sa + c1 * sb, c1 * sa - c0 * sb, 0.0),
                    // eps = m
                    _ => (c0 * p, c0 * q + c1, 0.0),
                }
            }
            Kind::FlowMatchDpmpp2m | Kind::Dpmpp2m => {
                let (c_x, c_d, h) = self.dpm_constants(i);
                if i == 0 || i + 1 == self.steps() {
                    (c_x - c_d * p, -c_d * q, 0.0)
                } else {
                    // x' = c_x·x − c_d·d0 − ½c_d·(d0 − prev)/r0
                    let h0 = self.lambda(i) - self.lambda(i - 1);
                    let k = 0.5 * c_d / (h0 / h);
                    (c_x - (c_d + k) * p, -(c_d + k) * q, k)
                }
            }
        };
        StepCoefficients { a, b, c, p, q }
    }

    /// Starting latents for a run from `init` (strength < 1), at step 0's noise level.
    pub fn noised(&self, init: &[f32], noise: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; init.len()];
        self.noise_into(0, init, noise, &mut out);
        out
    }

    /// `clean` noised to the level before step `i` (`i = steps()`: the end, no noise) into `out`.
    pub fn noise_into(&self, i: usize, clean: &[f32], noise: &[f32], out: &mut [f32]) {
        let (a, s) = match self.prediction {
            Prediction::FlowVelocity => (1.0 - self.sigmas[i], self.sigmas[i]),
            _ => self.alpha_sigma(self.sigmas[i]),
        };
        for ((o, x), n) in out.iter_mut().zip(clean).zip(noise) {
            *o = a * x + s * n;
        }
    }
}

/// Classifier-free guidance in place: `cond ← uncond + g·(cond − uncond)`.
pub fn guide(cond: &mut [f32], uncond: &[f32], g: f32) {
    for (c, u) in cond.iter_mut().zip(uncond) {
        *c = u + g * (*c - u);
    }
}

/// CFG rescale in place (diffusers' `rescale_noise_cfg`, arXiv 2305.08891 §3.4): with σ the standard deviation
/// over the whole row (Bessel-corrected, as torch's `std`), `guided ← φ·guided·(σ_cond/σ_guided) + (1 − φ)·guided`.
pub fn rescale(guided: &mut [f32], cond: &[f32], phi: f32) {
    let std = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        var.sqrt() as f32
    };
    let ratio = std(cond) / std(guided);
    let (a, b) = (phi, (1.0 - f64::from(phi)) as f32);
    for g in guided.iter_mut() {
        *g = a * (*g * ratio) + b * *g;
    }
}

#[cfg(test)]
mod tests;
