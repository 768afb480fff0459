//! CogVideoX's schedulers: `cogvideox_ddim` (diffusers CogVideoXDDIMScheduler, CogVideoX 2B) and `cogvideox_dpm`
//! (CogVideoXDPMScheduler, 5B / 1.5), both as CogVideoX configures them: scaled-linear betas 0.00085..0.012 over
//! 1000 steps built in f64, ᾱ SNR-shifted by `snr_shift_scale` then rescaled to zero terminal SNR, "trailing"
//! timesteps, `set_alpha_to_one`, v-prediction.
//!
//! Arithmetic follows diffusers: ᾱ and every step coefficient in f64 (its ᾱ table is float64), each coefficient
//! rounded to f32 where it meets the f32 latents, and the latent arithmetic in f32 in diffusers' order. Step i's
//! "previous" ᾱ is at `t_i − 1000 / N` (integer division; 1 below 0), not at the next timestep.
//!
//! `cogvideox_dpm` is stochastic: each step adds fresh noise, which vidmesh draws from the request seed's stream
//! `1 + i` for step i of the full schedule (the bundle's `[noise]` generator), so a seed fixes the whole run.

use vidmesh_model::noise::gaussian_stream;

const TRAIN_STEPS: usize = 1000;

/// CogVideoX's ᾱ table (f64) for `snr_shift_scale`.
pub fn alphas_cumprod(snr_shift_scale: f64) -> Vec<f64> {
    // torch.linspace(start, end, 1000, dtype=float64): the two halves computed from either end.
    let (start, end) = (0.00085f64.sqrt(), 0.012f64.sqrt());
    let last = TRAIN_STEPS - 1;
    let step = (end - start) / last as f64;
    let mut acc = 1.0f64;
    let shifted: Vec<f64> = (0..TRAIN_STEPS)
        .map(|i| {
            let sqrt_beta = if i < TRAIN_STEPS / 2 { start + step * i as f64 } else { end - step * (last - i) as f64 };
            acc *= 1.0 - sqrt_beta * sqrt_beta;
            acc / (snr_shift_scale + (1.0 - snr_shift_scale) * acc)
        })
        .collect();
    // rescale_zero_terminal_snr
    let s0 = shifted[0].sqrt();
    let st = shifted[last].sqrt();
    shifted
        .iter()
        .map(|a| {
            let mut r = a.sqrt();
            r -= st;
            r *= s0 / (s0 - st);
            r * r
        })
        .collect()
}

/// "trailing" timesteps: numpy's round(arange(1000, 0, −1000/N)) − 1 (which can hold one more than N values).
pub fn trailing_timesteps(steps: usize) -> Vec<u32> {
    let ratio = TRAIN_STEPS as f64 / steps as f64;
    let len = (-(TRAIN_STEPS as f64) / -ratio).ceil() as usize;
    (0..len).map(|i| ((TRAIN_STEPS as f64 + i as f64 * -ratio).round_ties_even() as i64 - 1) as u32).collect()
}

/// One request's CogVideoX schedule state.
#[derive(Debug, Clone)]
pub struct Cog {
    dpm: bool,
    ac: Vec<f64>,
    /// Timesteps of the full schedule.
    pub timesteps: Vec<u32>,
    /// 1000 / N (integer division), N = the requested steps.
    stride: i64,
    /// Index of the first step run (strength < 1).
    skip: usize,
    seed: u64,
    /// The previous step's clean estimate (DPM's second order).
    old_x0: Option<Vec<f32>>,
}

impl Cog {
    /// The schedule of `steps` steps; `dpm` picks CogVideoXDPMScheduler, else CogVideoXDDIMScheduler.
    pub fn new(dpm: bool, steps: usize, snr_shift_scale: f64, skip: usize, seed: u64) -> Self {
        Self {
            dpm,
            ac: alphas_cumprod(snr_shift_scale),
            timesteps: trailing_timesteps(steps),
            stride: (TRAIN_STEPS / steps.max(1)) as i64,
            skip,
            seed,
            old_x0: None,
        }
    }

    /// The same schedule entered `skip` steps in (strength < 1).
    pub fn starting_at(mut self, skip: usize) -> Self {
        self.skip = skip;
        self
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 { self.ac[t as usize] } else { 1.0 }
    }

    /// ᾱ at step `j` of the full schedule.
    pub fn alpha_at(&self, j: usize) -> f64 {
        self.ac[self.timesteps[j] as usize]
    }

    /// (√ᾱ, √(1−ᾱ)) as f32 for the v-prediction's clean estimate at step `j` of the full schedule.
    pub fn x0_coefficients(&self, j: usize) -> (f32, f32) {
        let a = self.alpha_at(j);
        (a.sqrt() as f32, (1.0 - a).sqrt() as f32)
    }

    /// Clean estimate from the v-prediction `v` at full-schedule step `j`.
    pub fn x0(&self, j: usize, x: &[f32], v: &[f32]) -> Vec<f32> {
        let (sa, sb) = self.x0_coefficients(j);
        x.iter().zip(v).map(|(x, v)| sa * x - sb * v).collect()
    }

    /// CogVideoXPipeline's dynamic CFG scale at full-schedule step `j` for `guidance`:
    /// 1 + g·(1 − cos(π·((N − t)/N)^5))/2, N the schedule's length, t the integer timestep (diffusers' formula as is).
    pub fn dynamic_guidance(&self, j: usize, guidance: f32) -> f32 {
        let n = self.timesteps.len() as f64;
        let t = f64::from(self.timesteps[j]);
        let u = ((n - t) / n).powf(5.0);
        (1.0 + f64::from(guidance) * ((1.0 - (std::f64::consts::PI * u).cos()) / 2.0)) as f32
    }

    /// Advances `x` by full-schedule step `j` with model output `v`.
    pub fn step(&mut self, j: usize, x: &mut [f32], v: &[f32]) {
        let t = i64::from(self.timesteps[j]);
        let prev = t - self.stride;
        let (a, ap) = (self.alpha(t), self.alpha(prev));
        let x0 = self.x0(j, x, v);
        if !self.dpm {
            let a_t = ((1.0 - ap) / (1.0 - a)).sqrt();
            let b_t = ap.sqrt() - a.sqrt() * a_t;
            let (a_t, b_t) = (a_t as f32, b_t as f32);
            for (x, x0) in x.iter_mut().zip(&x0) {
                *x = a_t * *x + b_t * x0;
            }
            return;
        }
        let lamb = |a: f64| (a / (1.0 - a)).sqrt().ln();
        let h = lamb(ap) - lamb(a);
        let m1 = (((1.0 - ap) / (1.0 - a)).sqrt() * (-h).exp()) as f32;
        let m2 = ((-2.0 * h).exp_m1() * ap.sqrt()) as f32;
        let mn = ((1.0 - ap).sqrt() * (1.0 - (-2.0 * h).exp()).sqrt()) as f32;
        let noise = gaussian_stream(self.seed, 1 + j as u32, x.len());
        // The first step after the start, or a step whose previous timestep is below 0: first order.
        let back = (j > self.skip && prev >= 0).then(|| self.alpha(i64::from(self.timesteps[j - 1])));
        match (back, self.old_x0.as_ref()) {
            (Some(ab), Some(old)) => {
                let r = (lamb(a) - lamb(ab)) / h;
                let (m3, m4) = ((1.0 + 1.0 / (2.0 * r)) as f32, (1.0 / (2.0 * r)) as f32);
                for (((x, x0), old), n) in x.iter_mut().zip(&x0).zip(old).zip(&noise) {
                    let d = m3 * x0 - m4 * old;
                    *x = m1 * *x - m2 * d + mn * n;
                }
            }
            _ => {
                for ((x, x0), n) in x.iter_mut().zip(&x0).zip(&noise) {
                    *x = m1 * *x - m2 * x0 + mn * n;
                }
            }
        }
        self.old_x0 = Some(x0);
    }
}
