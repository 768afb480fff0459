//! Step caching, per request: the accumulated-change rule of [`TierPolicy`] over the first block's residual.
//!
//! Invariants: the decision for a request depends only on its own rows (never on its batch-mates), so a request
//! skips the same steps alone or in any batch; the cached residual is only reused by the transformer that made it
//! (a switch of expert always runs the tail); `off` requests carry no [`StepCache`] and always run the tail.

use vidmesh_model::TierPolicy;

/// One request's caching state.
#[derive(Debug, Clone)]
pub struct StepCache {
    policy: TierPolicy,
    /// Change accumulated since the tail last ran.
    acc: f32,
    /// Last step's first-block residual, the request's rows side by side.
    prev: Vec<f32>,
    /// The tail's residual (`tail_output − block_output`) from the last step that ran it, rows side by side.
    residual: Vec<f32>,
    /// Which transformer made `residual`.
    expert: usize,
    /// Steps skipped since the tail last ran.
    in_row: u32,
    /// Steps skipped in all.
    pub skipped: u32,
}

/// Σ|a − b| / Σ|b| (∞ when `b` is empty or all zero).
pub fn relative_l1(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || b.is_empty() {
        return f32::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += f64::from((x - y).abs());
        den += f64::from(y.abs());
    }
    if den == 0.0 { f32::INFINITY } else { (num / den) as f32 }
}

impl StepCache {
    /// A fresh state for a request of this tier.
    pub fn new(policy: TierPolicy) -> Self {
        Self { policy, acc: 0.0, prev: Vec::new(), residual: Vec::new(), expert: 0, in_row: 0, skipped: 0 }
    }

    /// Whether step `step` (0-based) of `steps`, run by transformer `expert`, reuses the cached residual; `signal`
    /// is this step's first-block residual of the request's rows. Updates the accumulator either way.
    pub fn skip(&mut self, step: usize, steps: usize, expert: usize, signal: Vec<f32>) -> bool {
        let change = relative_l1(&signal, &self.prev);
        self.prev = signal;
        let p = &self.policy;
        let eligible = step >= p.warmup as usize
            && step + (p.final_steps as usize) < steps
            && !self.residual.is_empty()
            && self.expert == expert
            && self.in_row < p.max_skips;
        if eligible && self.acc + change < p.threshold {
            self.acc += change;
            self.in_row += 1;
            self.skipped += 1;
            return true;
        }
        self.acc = 0.0;
        self.in_row = 0;
        false
    }

    /// Stores the tail's residual of a step that ran it.
    pub fn store(&mut self, residual: Vec<f32>, expert: usize) {
        self.residual = residual;
        self.expert = expert;
    }

    /// The cached residual (empty before the tail first ran).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TierPolicy {
        TierPolicy { threshold: 0.1, max_skips: 2, warmup: 1, final_steps: 1 }
    }

    #[test]
    fn accumulates_until_the_threshold_and_caps_runs_of_skips() {
        let mut c = StepCache::new(policy());
        let s = |v: f32| vec![1.0, v];
        assert!(!c.skip(0, 10, 0, s(1.0)), "warm-up step runs");
        c.store(vec![0.5, 0.5], 0);
        // change 0.02 per step: skips twice (acc 0.02, 0.04), then the cap of 2 forces a run.
        assert!(c.skip(1, 10, 0, s(1.04)));
        assert!(c.skip(2, 10, 0, s(1.08)));
        assert!(!c.skip(3, 10, 0, s(1.12)), "max_skips reached");
        // A large change runs the tail and resets the accumulator.
        assert!(!c.skip(4, 10, 0, s(3.0)));
        assert!(c.skip(5, 10, 0, s(3.0)));
        assert_eq!(c.skipped, 3);
    }

    #[test]
    fn never_skips_the_last_steps_an_expert_switch_or_without_a_residual() {
        let mut c = StepCache::new(policy());
        assert!(!c.skip(1, 10, 0, vec![1.0]), "no residual yet");
        c.store(vec![0.0], 0);
        assert!(!c.skip(9, 10, 0, vec![1.0]), "final step");
        assert!(!c.skip(5, 10, 1, vec![1.0]), "residual of the other transformer");
        assert_eq!(c.skipped, 0);
    }

    #[test]
    fn relative_l1_is_scale_free() {
        assert_eq!(relative_l1(&[2.0, 2.0], &[1.0, 1.0]), 1.0);
        assert_eq!(relative_l1(&[20.0, 20.0], &[10.0, 10.0]), 1.0);
        assert!(relative_l1(&[1.0], &[]).is_infinite());
    }
}
