//! The scheduler's own invariants (parity with diffusers is services/denoiser/tests/schedulers.rs).
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

/// The device loop's linear form reproduces `step` (and `x0`) for every kind and prediction, multistep
/// memory included, up to float rounding.
#[test]
fn coefficients_reproduce_every_step() {
    let n = 64;
    let mut seed = 1u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    for (kind, pred) in [
        (Kind::FlowMatchEuler, Prediction::FlowVelocity),
        (Kind::FlowMatchDpmpp2m, Prediction::FlowVelocity),
        (Kind::Ddim, Prediction::Epsilon),
        (Kind::Ddim, Prediction::V),
        (Kind::Dpmpp2m, Prediction::Epsilon),
        (Kind::Dpmpp2m, Prediction::V),
    ] {
        for skip in [0, 3] {
            let mut host = Scheduler::new(kind, pred, 8, 2.0, skip);
            let lin = host.clone();
            let mut x: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let mut y = x.clone();
            let mut prev = vec![0.0f32; n];
            for i in 0..host.steps() {
                let m: Vec<f32> = (0..n).map(|_| rnd()).collect();
                let x0 = host.x0(i, &x, &m);
                host.step(i, &mut x, &m);
                let k = lin.coefficients(i);
                let y0: Vec<f32> = y.iter().zip(&m).map(|(y, m)| k.p * y + k.q * m).collect();
                y = y.iter().zip(&m).zip(&prev).map(|((y, m), p)| k.a * y + k.b * m + k.c * p).collect();
                prev = y0.clone();
                let scale = x.iter().fold(1.0f32, |a, v| a.max(v.abs()));
                for (a, b) in x.iter().zip(&y).chain(x0.iter().zip(&y0)) {
                    assert!(
                        (a - b).abs() <= 2e-5 * scale.max(b.abs()),
                        "{kind:?}/{pred:?} skip {skip} step {i}: {a} vs {b}"
                    );
                }
                y.clone_from(&x); // compare one step at a time from the same state
            }
        }
    }
}

#[test]
fn cfg_rescale_mixes_in_the_output_rescaled_to_the_conditional_spread() {
    // σ(cond) = 2·σ(guided): φ = 0.5 gives 0.5·2g + 0.5·g = 1.5g; φ = 0 leaves g.
    let cond = [2.0f32, 4.0, 6.0, 8.0];
    let mut g = [1.0f32, 2.0, 3.0, 4.0];
    rescale(&mut g, &cond, 0.5);
    for (got, want) in g.iter().zip([1.5f32, 3.0, 4.5, 6.0]) {
        assert!((got - want).abs() <= 1e-6, "{got} vs {want}");
    }
    let mut g = [1.0f32, 2.0, 3.0, 4.0];
    rescale(&mut g, &cond, 0.0);
    assert_eq!(g, [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn kinds_match_predictions() {
    assert!(Kind::FlowMatchEuler.supports(Prediction::FlowVelocity));
    assert!(!Kind::Ddim.supports(Prediction::FlowVelocity));
    assert!(Kind::Dpmpp2m.supports(Prediction::V));
    assert!(Kind::UniPcFlow.supports(Prediction::FlowVelocity));
    assert!(!Kind::UniPcFlow.supports(Prediction::Epsilon) && !Kind::UniPcFlow.supports(Prediction::V));
    for n in Kind::NAMES {
        let kind = Kind::parse(n);
        let host_only = [Kind::UniPcFlow, Kind::CogVideoXDdim, Kind::CogVideoXDpm];
        assert!(kind.is_some_and(|k| k.device_loop() != host_only.contains(&k)), "{n}");
    }
}
