//! `unipc_flow`: diffusers' `UniPCMultistepScheduler` as Wan configures it (flow prediction, flow sigmas, bh2,
//! order 2, predict_x0, lower_order_final, final sigma 0) — its schedule and its corrector + predictor update, in
//! f32 in the order torch computes them (log/expm1 in double rounded once, the corrector's 2×2 solve as LAPACK).
//!
//! Invariant: the scheduler keeps the corrected sample and the last two clean estimates itself; a caller feeds back
//! exactly the `x` the previous step returned.

use super::{Scheduler, TRAIN_STEPS};

/// UniPC's flow sigmas and diffusers' integer timesteps (`use_flow_sigmas`, `linspace` spacing, final sigma 0), as
/// `set_timesteps` builds them in float64: numpy linspace(1, 1/1000, N+1) with its last value dropped, shifted, the
/// first nudged to 1 − 1e-6 when it is within 1e-6 of 1 (so log(alpha) stays finite); timesteps are
/// `int64(sigma·1000)` of those float64 values (truncation), sigmas are then rounded to f32 with a final 0 appended.
pub(super) fn unipc_flow_sigmas(steps: usize, shift: f64) -> (Vec<f32>, Vec<u32>) {
    let (start, stop) = (1.0f64, 1.0 / TRAIN_STEPS as f64);
    let delta = (stop - start) / steps as f64;
    let mut s64: Vec<f64> = (0..steps)
        .map(|i| {
            let u = i as f64 * delta + start;
            shift * u / (1.0 + (shift - 1.0) * u)
        })
        .collect();
    if let Some(first) = s64.first_mut().filter(|s| (**s - 1.0).abs() < 1e-6) {
        *first -= 1e-6;
    }
    let t = s64.iter().map(|s| (s * TRAIN_STEPS as f64) as u32).collect();
    let mut s: Vec<f32> = s64.iter().map(|&s| s as f32).collect();
    s.push(0.0);
    (s, t)
}

/// Natural log of an f32 as torch computes it on float32 tensors (SLEEF/MKL, almost always correctly rounded):
/// in f64, rounded once. (glibc's `logf`, behind `f32::ln`, is one ulp off more often.)
fn ln_f32(v: f32) -> f32 {
    f64::from(v).ln() as f32
}

/// `expm1` of an f32 as torch computes it (see [`ln_f32`]; glibc's `expm1f` is one ulp off for ~5% of inputs).
fn expm1_f32(v: f32) -> f32 {
    f64::from(v).exp_m1() as f32
}

/// `torch.linalg.solve([[1, 1], [r, 1]], [b1, b2])` in float32 as LAPACK (MKL sgesv) computes it: LU with partial
/// pivoting (row 2 only when |r| > 1), multiplier and back substitution through reciprocals of the pivots, forward
/// substitution fused (one rounding). Bit-identical to torch 2.15 / MKL on 40 000 random systems.
fn solve_unipc_2x2(r: f32, b1: f32, b2: f32) -> (f32, f32) {
    if r.abs() <= 1.0 {
        let u22 = 1.0 - r;
        let x2 = (-r).mul_add(b1, b2) * (1.0 / u22);
        (b1 - x2, x2)
    } else {
        let l = 1.0 / r;
        let u22 = 1.0 - l;
        let x2 = (-l).mul_add(b2, b1) * (1.0 / u22);
        ((b2 - x2) * l, x2)
    }
}

impl Scheduler {
    /// UniPC's lambda = log(alpha) − log(sigma) at step boundary `j` (flow: alpha = 1 − sigma; +inf at sigma 0).
    fn unipc_lambda(&self, j: usize) -> f32 {
        let s = self.sigmas[j];
        ln_f32(1.0 - s) - ln_f32(s)
    }

    /// UniPC's constants for an update from boundary `s` to `t`, as diffusers' `multistep_uni_{p,c}_bh_update`
    /// (predict_x0, bh2) compute them in float32: (sigma_t/sigma_s, alpha_t·hφ1, alpha_t·B(h), h, hφ1) with
    /// hφ1 = B(h) = expm1(−h). The update is `x_t = c_x·x − c_m·m0 − c_b·(Σ rho_k·D_k)`.
    pub(super) fn unipc_constants(&self, s: usize, t: usize) -> (f32, f32, f32, f32, f32) {
        let (sigma_t, sigma_s) = (self.sigmas[t], self.sigmas[s]);
        let alpha_t = 1.0 - sigma_t;
        let h = self.unipc_lambda(t) - self.unipc_lambda(s);
        let h_phi_1 = expm1_f32(-h);
        let b_h = h_phi_1; // bh2: B(h) = expm1(hh), the same tensor value as hφ1
        (sigma_t / sigma_s, alpha_t * h_phi_1, alpha_t * b_h, h, h_phi_1)
    }

    /// UniPC step `i` (diffusers `UniPCMultistepScheduler.step`): the UniC corrector refines `x` (the previous
    /// step's predictor output) with the model output just computed at it, then the UniP predictor advances the
    /// corrected sample. Orders: predictor 1 on the first step taken and on the last step (`lower_order_final`),
    /// 2 otherwise; the corrector has the previous predictor's order. The corrected sample is kept for the next
    /// step's corrector, so `x` as returned is the predictor's output (the last step's, at sigma 0, is final).
    pub(super) fn unipc(&mut self, i: usize, x: &mut [f32], out: &[f32]) {
        let m = self.x0(i, x, out);
        if let (Some(last), Some(m0)) = (self.last_sample.take(), self.prev_x0.as_ref()) {
            let (c_x, c_m, c_b, h, h_phi_1) = self.unipc_constants(i - 1, i);
            match self.prev2_x0.as_ref().filter(|_| self.last_order == 2) {
                None => {
                    // rhos_c = [0.5]; no D1s.
                    for (((x, last), m), m0) in x.iter_mut().zip(&last).zip(&m).zip(m0) {
                        *x = (c_x * last - c_m * m0) - c_b * (0.5 * (m - m0));
                    }
                }
                Some(m1) => {
                    let rk = (self.unipc_lambda(i - 2) - self.unipc_lambda(i - 1)) / h;
                    // b_k = hφ_k·k!/B(h) with B(h) = hφ1 (bh2); rhos_c = solve(R, b), R = [[1, 1], [rk, 1]].
                    let (hh, b_h) = (-h, h_phi_1);
                    let mut h_phi_k = h_phi_1 / hh - 1.0;
                    let b1 = h_phi_k * 1.0 / b_h;
                    h_phi_k = h_phi_k / hh - 0.5;
                    let b2 = h_phi_k * 2.0 / b_h;
                    let (rho0, rho1) = solve_unipc_2x2(rk, b1, b2);
                    for ((((x, last), m), m0), m1) in x.iter_mut().zip(&last).zip(&m).zip(m0).zip(m1) {
                        let d1 = (m1 - m0) / rk;
                        *x = (c_x * last - c_m * m0) - c_b * (rho0 * d1 + rho1 * (m - m0));
                    }
                }
            }
        }
        let order = if self.prev_x0.is_some() && i + 1 < self.steps() { 2 } else { 1 };
        self.prev2_x0 = self.prev_x0.take();
        self.last_sample = Some(x.to_vec());
        self.last_order = order;
        let (c_x, c_m, c_b, h, _) = self.unipc_constants(i, i + 1);
        match self.prev2_x0.as_ref().filter(|_| order == 2) {
            None => {
                for (x, m0) in x.iter_mut().zip(&m) {
                    *x = c_x * *x - c_m * m0;
                }
            }
            Some(m1) => {
                // rhos_p = [0.5]
                let rk = (self.unipc_lambda(i - 1) - self.unipc_lambda(i)) / h;
                for ((x, m0), m1) in x.iter_mut().zip(&m).zip(m1) {
                    *x = (c_x * *x - c_m * m0) - c_b * (0.5 * ((m1 - m0) / rk));
                }
            }
        }
        self.prev_x0 = Some(m);
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// The 2×2 solve of UniPC's corrector solves its system, on both sides of the pivoting threshold |r| = 1.
    #[test]
    fn unipc_solve_solves() {
        for r in [-0.25f32, -0.9, -1.0, -1.1, -3.0, 0.5] {
            let (b1, b2) = (0.4f32, -0.15f32);
            let (x1, x2) = solve_unipc_2x2(r, b1, b2);
            assert!((x1 + x2 - b1).abs() < 1e-6 && (r * x1 + x2 - b2).abs() < 1e-6, "r {r}: {x1} {x2}");
        }
    }

    /// UniPC's schedule (diffusers set_timesteps with use_flow_sigmas): first sigma 1 − 1e-6, integer timesteps by
    /// truncation, last sigma 0; a skip enters the same schedule part-way.
    #[test]
    fn unipc_schedule() {
        let s = Scheduler::new(Kind::UniPcFlow, Prediction::FlowVelocity, 4, 3.0, 0);
        assert_eq!(s.sigmas, [0.999_999, 0.900_119_96, 0.750_374_8, 0.500_999, 0.0]);
        assert_eq!((0..4).map(|i| s.diffusers_timestep(i)).collect::<Vec<_>>(), [999, 900, 750, 500].map(Some));
        assert_eq!(
            Scheduler::new(Kind::FlowMatchEuler, Prediction::FlowVelocity, 4, 3.0, 0).diffusers_timestep(0),
            None
        );
        let skipped = Scheduler::new(Kind::UniPcFlow, Prediction::FlowVelocity, 4, 3.0, 2);
        assert_eq!(skipped.steps(), 2);
        assert_eq!(skipped.sigmas, s.sigmas[2..]);
        assert_eq!(skipped.diffusers_timestep(0), Some(750));
        assert_eq!(Scheduler::new(Kind::UniPcFlow, Prediction::FlowVelocity, 4, 3.0, 9).steps(), 1);
    }

    /// Skip semantics of UniPC (diffusers' set_begin_index): the history starts empty at step `skip`, so its first
    /// step is a plain first-order predictor (no corrector), and a one-step remainder lands on the clean estimate.
    #[test]
    fn unipc_skipped_start_has_no_history() {
        let n = 16;
        let x: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin()).collect();
        let v: Vec<f32> = (0..n).map(|k| (k as f32 * 0.11).cos()).collect();
        let mut s = Scheduler::new(Kind::UniPcFlow, Prediction::FlowVelocity, 10, 5.0, 4);
        let (s0, s1) = (s.sigmas[0], s.sigmas[1]);
        let mut y = x.clone();
        s.step(0, &mut y, &v);
        // First order from s0 to s1 in flow form: x' = (s1/s0)·x − (1 − s1)·expm1(−h)·x0, x0 = x − s0·v.
        let h = ((1.0 - s1) / s1).ln() - ((1.0 - s0) / s0).ln();
        for k in 0..n {
            let want = s1 / s0 * x[k] - (1.0 - s1) * (-h).exp_m1() * (x[k] - s0 * v[k]);
            assert!((y[k] - want).abs() < 1e-5, "{k}: {} vs {want}", y[k]);
        }
        let mut last = Scheduler::new(Kind::UniPcFlow, Prediction::FlowVelocity, 10, 5.0, 9);
        let mut y = x.clone();
        last.step(0, &mut y, &v);
        assert_eq!(y, last.x0(0, &x, &v), "the last step lands on x0 (sigma 0)");
    }
}
