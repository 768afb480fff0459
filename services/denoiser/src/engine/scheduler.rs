//! Schedulers: the noise levels of a run and the update from one level to the next, given the (guided) model
//! output. Pure arithmetic on f32 slices; knows nothing of ONNX or gRPC.
//!
//! flow_match_euler (rectified flow, velocity prediction; diffusers' FlowMatchEulerDiscreteScheduler with a static
//! shift): u_i = 1 - i/N, sigma_i = shift·u_i / (1 + (shift-1)·u_i), sigma_N = 0; x_{i+1} = x_i + (sigma_{i+1} -
//! sigma_i)·v; the model sees timestep = sigma_i · timestep_scale; the clean estimate is x0 = x_i - sigma_i·v.

/// Scheduler kinds this build implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flow matching, Euler, with timestep shift.
    FlowMatchEuler,
}

impl Kind {
    /// Parses a manifest/request name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "flow_match_euler" => Some(Self::FlowMatchEuler),
            _ => None,
        }
    }

    /// Every accepted name, for error messages.
    pub const NAMES: &'static [&'static str] = &["flow_match_euler"];
}

/// The noise levels of one run: `steps + 1` sigmas ending at 0, as f32 (the reference computes them in f64 and
/// rounds once).
pub fn flow_sigmas(steps: u32, shift: f32) -> Vec<f32> {
    let shift = f64::from(shift);
    let n = f64::from(steps);
    let mut s: Vec<f32> = (0..steps)
        .map(|i| {
            let u = 1.0 - f64::from(i) / n;
            (shift * u / (1.0 + (shift - 1.0) * u)) as f32
        })
        .collect();
    s.push(0.0);
    s
}

/// A run's schedule and position in it.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Kind.
    pub kind: Kind,
    /// Noise levels, one more than the steps.
    pub sigmas: Vec<f32>,
}

impl Schedule {
    /// The full schedule for `steps` steps, started `skip` steps in (img2vid-style strength < 1).
    pub fn new(kind: Kind, steps: u32, shift: f32, skip: usize) -> Self {
        let sigmas = match kind {
            Kind::FlowMatchEuler => flow_sigmas(steps, shift),
        };
        Self { kind, sigmas: sigmas[skip.min(sigmas.len() - 1)..].to_vec() }
    }

    /// Steps to run.
    pub fn steps(&self) -> usize {
        self.sigmas.len() - 1
    }

    /// The model's timestep input at step `i`.
    pub fn timestep(&self, i: usize, timestep_scale: f32) -> f32 {
        self.sigmas[i] * timestep_scale
    }

    /// Advances `x` from step `i`'s noise level to the next with model output `v`.
    pub fn step(&self, i: usize, x: &mut [f32], v: &[f32]) {
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        for (x, v) in x.iter_mut().zip(v) {
            *x += dt * v;
        }
    }

    /// The clean-latent estimate at step `i` (for previews).
    pub fn x0(&self, i: usize, x: &[f32], v: &[f32]) -> Vec<f32> {
        let s = self.sigmas[i];
        x.iter().zip(v).map(|(x, v)| x - s * v).collect()
    }

    /// Starting latents for a run from `init` (strength < 1): `(1 - sigma_0)·init + sigma_0·noise`.
    pub fn noised(&self, init: &[f32], noise: &[f32]) -> Vec<f32> {
        let s = self.sigmas[0];
        init.iter().zip(noise).map(|(x, n)| (1.0 - s) * x + s * n).collect()
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
        let skipped = Schedule::new(Kind::FlowMatchEuler, 10, 1.0, 4);
        assert_eq!(skipped.steps(), 6);
        assert!((skipped.sigmas[0] - 0.6).abs() < 1e-7);
    }
}
