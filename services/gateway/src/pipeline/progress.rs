//! A job's progress as one monotonic fraction with an ETA: each stage's own progress (denoising steps, decoded
//! frames) mapped onto its band of the whole, and the time after the last denoising step (decode, store,
//! classify: the "tail") estimated from the jobs before.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::jobs::{PROGRESS_DECODE_END, PROGRESS_DENOISE_END, PROGRESS_DENOISE_START};

/// The progress and ETA of jobs through one pipeline.
#[derive(Debug, Default)]
pub struct Progress {
    /// Moving average of seconds from the last denoising step to completion.
    tail_seconds: Mutex<Option<f64>>,
}

/// Where a job is: its fraction done and the seconds it is expected to take still.
pub type Point = (f64, f64);

impl Progress {
    fn tail(&self) -> f64 {
        self.tail_seconds.lock().map(|t| t.unwrap_or(0.0)).unwrap_or(0.0)
    }

    /// Denoising step `step` of `total` done, the denoiser expecting `eta` more.
    pub fn denoising(&self, step: u32, total: u32, eta: Duration) -> Point {
        let frac = f64::from(step) / f64::from(total.max(1));
        (
            PROGRESS_DENOISE_START + (PROGRESS_DENOISE_END - PROGRESS_DENOISE_START) * frac,
            eta.as_secs_f64() + self.tail(),
        )
    }

    /// `done` of `total` frames decoded, the tail having started at `tail_start`.
    pub fn decoding(&self, done: u32, total: u32, tail_start: Instant) -> Point {
        let frac = f64::from(done) / f64::from(total.max(1));
        (PROGRESS_DENOISE_END + (PROGRESS_DECODE_END - PROGRESS_DENOISE_END) * frac, self.left(tail_start))
    }

    /// Decoded and stored; the classifier is next.
    pub fn classifying(&self, tail_start: Instant) -> Point {
        (PROGRESS_DECODE_END, self.left(tail_start))
    }

    fn left(&self, tail_start: Instant) -> f64 {
        (self.tail() - tail_start.elapsed().as_secs_f64()).max(0.0)
    }

    /// A job finished its tail in `tail`: the estimate moves toward it.
    pub fn finished(&self, tail: Duration) {
        let tail = tail.as_secs_f64();
        if let Ok(mut t) = self.tail_seconds.lock() {
            *t = Some(t.map_or(tail, |old| 0.7 * old + 0.3 * tail));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_estimate_follows_finished_jobs_and_progress_stays_in_its_bands() {
        let p = Progress::default();
        let (at, eta) = p.denoising(0, 30, Duration::from_secs(3));
        assert_eq!((at, eta), (PROGRESS_DENOISE_START, 3.0));
        p.finished(Duration::from_secs(10));
        p.finished(Duration::from_secs(20));
        assert!((p.tail() - 13.0).abs() < 1e-9, "{}", p.tail());
        let (end, eta) = p.denoising(30, 30, Duration::ZERO);
        assert_eq!((end, eta), (PROGRESS_DENOISE_END, 13.0));
        let (decoded, _) = p.decoding(16, 16, Instant::now());
        assert_eq!(decoded, PROGRESS_DECODE_END);
        assert_eq!(p.decoding(0, 0, Instant::now()).0, PROGRESS_DENOISE_END, "no frames: no division by zero");
    }
}
