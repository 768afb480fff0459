//! Schedulers: the noise levels of a run and the update from one level to the next given the (guided) model
//! output. Pure arithmetic on f32 slices; knows nothing of ONNX or gRPC. Each kind reproduces the diffusers
//! scheduler of the same family (checked on recorded model outputs: tests/schedulers.rs), doing its per-step
//! arithmetic in f32 in the same order as diffusers does with torch.
//!
//! - `flow_match_euler` (rectified flow; diffusers FlowMatchEulerDiscreteScheduler with static shift, sigmas
//!   `u_i = 1 - i/N` shifted): `x += (sigma_{i+1} - sigma_i)·v`.
//! - `flow_match_dpmpp_2m` (diffusers DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint,
//!   `use_flow_sigmas`, `flow_shift`, final sigma 0): data-prediction multistep solver for flow models.
//! - `ddim` (DDIMScheduler, eta 0, SD configuration: scaled-linear betas 0.00085..0.012 over 1000 steps,
//!   "leading" spacing, steps_offset 1, set_alpha_to_one false) for epsilon and v models.
//! - `dpmpp_2m` (DPMSolverMultistepScheduler, dpmsolver++ order 2 midpoint, same betas, "linspace" spacing,
//!   final sigma 0) for epsilon and v models.
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
}

impl Kind {
    /// Every accepted name, for error messages.
    pub const NAMES: &'static [&'static str] = &["flow_match_euler", "flow_match_dpmpp_2m", "ddim", "dpmpp_2m"];

    /// Parses a manifest/request name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "flow_match_euler" => Some(Self::FlowMatchEuler),
            "flow_match_dpmpp_2m" => Some(Self::FlowMatchDpmpp2m),
            "ddim" => Some(Self::Ddim),
            "dpmpp_2m" => Some(Self::Dpmpp2m),
            _ => None,
        }
    }

    /// Whether this scheduler can drive a model with `prediction`.
    pub fn supports(self, prediction: Prediction) -> bool {
        matches!(
            (self, prediction),
            (Self::FlowMatchEuler | Self::FlowMatchDpmpp2m, Prediction::FlowVelocity)
                | (Self::Ddim | Self::Dpmpp2m, Prediction::Epsilon | Prediction::V)
        )
    }
}

const TRAIN_STEPS: usize = 1000;

/// Scaled-linear betas of Stable Diffusion (0.00085..0.012) → cumulative alpha products, bit for bit as diffusers
/// builds them: torch.linspace in float32 (symmetric halves, fused multiply-add), squared, `1 - β`, and a cumprod
/// accumulated in double and rounded per element.
pub fn sd_alphas_cumprod() -> Vec<f32> {
    let (start, end) = (0.00085f64.sqrt() as f32, 0.012f64.sqrt() as f32);
    let last = TRAIN_STEPS - 1;
    let step = (end - start) / last as f32;
    let mut acc = 1.0f64;
    (0..TRAIN_STEPS)
        .map(|i| {
            let sqrt_beta = if i < TRAIN_STEPS / 2 {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((last - i) as f32, end)
            };
            let alpha = 1.0f32 - sqrt_beta * sqrt_beta;
            acc *= f64::from(alpha);
            acc as f32
        })
        .collect()
}

/// The shifted flow-matching sigmas of the reference sampler: `steps + 1` values ending at 0.
pub fn flow_sigmas(steps: u32, shift: f32) -> Vec<f32> {
    let (shift, n) = (f64::from(shift), f64::from(steps));
    let mut s: Vec<f32> = (0..steps)
        .map(|i| {
            let u = 1.0 - f64::from(i) / n;
            (shift * u / (1.0 + (shift - 1.0) * u)) as f32
        })
        .collect();
    s.push(0.0);
    s
}

/// DPM-Solver's flow sigmas (`use_flow_sigmas`): numpy linspace(1, 1/1000, N+1), shifted, reversed, last dropped.
fn dpm_flow_sigmas(steps: usize, shift: f64) -> Vec<f32> {
    let (start, stop) = (1.0f64, 1.0 / TRAIN_STEPS as f64);
    let delta = (stop - start) / steps as f64;
    let mut s: Vec<f32> = (0..=steps)
        .map(|i| {
            let alpha = if i == steps { stop } else { i as f64 * delta + start };
            let sigma = 1.0 - alpha;
            (shift * sigma / (1.0 + (shift - 1.0) * sigma)) as f32
        })
        .rev()
        .take(steps)
        .collect();
    s.push(0.0);
    s
}

/// One request's scheduler.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kind: Kind,
    prediction: Prediction,
    /// The model's timestep input per step (before the manifest's timestep scale for flow kinds).
    timesteps: Vec<f32>,
    /// Noise level per step boundary (`steps + 1` values): flow sigma, or sqrt((1-ᾱ)/ᾱ) for DDPM kinds.
    pub sigmas: Vec<f32>,
    /// ᾱ at each step's timestep and after the last step (DDIM).
    alphas: Vec<f32>,
    /// Last converted output (x0) for the second-order update.
    prev_x0: Option<Vec<f32>>,
}

impl Scheduler {
    /// A scheduler of `steps` steps, started `skip` steps in (strength < 1).
    pub fn new(kind: Kind, prediction: Prediction, steps: u32, shift: f32, skip: usize) -> Self {
        let n = steps as usize;
        let (timesteps, sigmas, alphas) = match kind {
            Kind::FlowMatchEuler => {
                let s = flow_sigmas(steps, shift);
                (s[..n].to_vec(), s, vec![])
            }
            Kind::FlowMatchDpmpp2m => {
                let s = dpm_flow_sigmas(n, f64::from(shift));
                (s[..n].to_vec(), s, vec![])
            }
            Kind::Ddim => {
                let ac = sd_alphas_cumprod();
                let ratio = TRAIN_STEPS / n;
                let t: Vec<usize> = (0..n).rev().map(|i| i * ratio + 1).collect();
                let mut alphas: Vec<f32> = t.iter().map(|&t| ac[t]).collect();
                alphas.push(ac[0]); // set_alpha_to_one = false: the final "previous" alpha is ᾱ_0
                let sigmas = alphas.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect();
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
            prev_x0: None,
        }
    }

    /// Steps to run.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The model's timestep input at step `i` (flow kinds are scaled by the manifest's timestep_scale).
    pub fn timestep(&self, i: usize, timestep_scale: f32) -> f32 {
        match self.kind {
            Kind::FlowMatchEuler | Kind::FlowMatchDpmpp2m => self.timesteps[i] * timestep_scale,
            Kind::Ddim | Kind::Dpmpp2m => self.timesteps[i],
        }
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
        }
    }

    fn dpmpp_2m(&mut self, i: usize, x: &mut [f32], out: &[f32]) {
        let m0 = self.x0(i, x, out);
        let lambda = |(a, s): (f32, f32)| a.ln() - s.ln();
        let (alpha_t, sigma_t) = self.alpha_sigma(self.sigmas[i + 1]);
        let (alpha_s0, sigma_s0) = self.alpha_sigma(self.sigmas[i]);
        let h = lambda((alpha_t, sigma_t)) - lambda((alpha_s0, sigma_s0));
        let c_x = sigma_t / sigma_s0;
        let c_d = alpha_t * ((-h).exp() - 1.0);
        let last = i + 1 == self.steps();
        match self.prev_x0.as_ref().filter(|_| !last) {
            None => {
                for (x, d0) in x.iter_mut().zip(&m0) {
                    *x = c_x * *x - c_d * d0;
                }
            }
            Some(m1) => {
                let (alpha_s1, sigma_s1) = self.alpha_sigma(self.sigmas[i - 1]);
                let h0 = lambda((alpha_s0, sigma_s0)) - lambda((alpha_s1, sigma_s1));
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

    /// Starting latents for a run from `init` (strength < 1), at step 0's noise level.
    pub fn noised(&self, init: &[f32], noise: &[f32]) -> Vec<f32> {
        match self.prediction {
            Prediction::FlowVelocity => {
                let s = self.sigmas[0];
                init.iter().zip(noise).map(|(x, n)| (1.0 - s) * x + s * n).collect()
            }
            _ => {
                let (a, s) = self.alpha_sigma(self.sigmas[0]);
                init.iter().zip(noise).map(|(x, n)| a * x + s * n).collect()
            }
        }
    }
}

/// Classifier-free guidance in place: `cond ← uncond + g·(cond − uncond)`.
pub fn guide(cond: &mut [f32], uncond: &[f32], g: f32) {
    for (c, u) in cond.iter_mut().zip(uncond) {
        *c = u + g * (*c - u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sigmas_match_the_reference_formula() {
        let s = flow_sigmas(4, 2.0);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0], 1.0);
        assert!((s[1] - (2.0 * 0.75 / 1.75) as f32).abs() < 1e-7);
        assert_eq!(s[4], 0.0);
        let skipped = Scheduler::new(Kind::FlowMatchEuler, Prediction::FlowVelocity, 10, 1.0, 4);
        assert_eq!(skipped.steps(), 6);
        assert!((skipped.sigmas[0] - 0.6).abs() < 1e-7);
    }

    #[test]
    fn kinds_match_predictions() {
        assert!(Kind::FlowMatchEuler.supports(Prediction::FlowVelocity));
        assert!(!Kind::Ddim.supports(Prediction::FlowVelocity));
        assert!(Kind::Dpmpp2m.supports(Prediction::V));
        for n in Kind::NAMES {
            assert!(Kind::parse(n).is_some());
        }
    }
}
