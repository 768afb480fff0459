//! Noise-level tables of the schedulers: Stable Diffusion's ᾱ, the flow sigmas (static shift, LTX-Video's dynamic
//! shift, DPM-Solver's flow sigmas), each built in the dtypes and order diffusers uses.

use super::TRAIN_STEPS;

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

/// LTX-Video's sigmas (`steps + 1`, ending at 0) as LTXPipeline builds them: numpy linspace(1, 1/N, N) in f64
/// rounded to f32, the exponential time shift e^μ / (e^μ + 1/σ − 1) in f32, then — with `terminal` — stretched
/// so the last is `terminal`: 1 − (1 − σ)/((1 − σ_last)/(1 − terminal)), in f32.
pub fn dynamic_flow_sigmas(steps: u32, mu: f64, terminal: Option<f64>) -> Vec<f32> {
    let n = steps.max(1) as usize;
    let (start, stop) = (1.0f64, 1.0 / n as f64);
    let step = if n > 1 { (stop - start) / (n - 1) as f64 } else { 0.0 };
    let e = mu.exp() as f32;
    let mut s: Vec<f32> = (0..n)
        .map(|i| if n > 1 && i == n - 1 { stop } else { i as f64 * step + start })
        .map(|u| {
            let u = u as f32;
            e / (e + (1.0 / u - 1.0))
        })
        .collect();
    if let Some(t) = terminal {
        let scale = (1.0 - s[n - 1]) / (1.0 - t) as f32;
        for v in &mut s {
            *v = 1.0 - (1.0 - *v) / scale;
        }
    }
    s.push(0.0);
    s
}

/// DPM-Solver's flow sigmas (`use_flow_sigmas`): numpy linspace(1, 1/1000, N+1), shifted, reversed, last dropped.
pub(super) fn dpm_flow_sigmas(steps: usize, shift: f64) -> Vec<f32> {
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
