//! 2-D FFTs of `TILE × TILE` arrays (row-major), forward and inverse (unnormalised, as rustfft).

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::TILE;

/// Forward/inverse 2-D FFT plans for TILE×TILE arrays.
pub(crate) struct Fft2 {
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl Fft2 {
    pub(crate) fn new() -> Self {
        let mut planner = FftPlanner::new();
        Self { forward: planner.plan_fft_forward(TILE), inverse: planner.plan_fft_inverse(TILE) }
    }

    /// Transforms `data` (TILE×TILE, row-major) in place.
    pub(crate) fn run(&self, data: &mut [Complex<f64>], inverse: bool) {
        let fft = if inverse { &self.inverse } else { &self.forward };
        for row in data.chunks_exact_mut(TILE) {
            fft.process(row);
        }
        let mut col = vec![Complex::new(0.0, 0.0); TILE];
        for x in 0..TILE {
            for y in 0..TILE {
                col[y] = data[y * TILE + x];
            }
            fft.process(&mut col);
            for y in 0..TILE {
                data[y * TILE + x] = col[y];
            }
        }
    }

    /// The spectrum of a real TILE×TILE array.
    pub(crate) fn forward_real(&self, v: &[f64]) -> Vec<Complex<f64>> {
        let mut c: Vec<Complex<f64>> = v.iter().map(|&x| Complex::new(x, 0.0)).collect();
        self.run(&mut c, false);
        c
    }
}

/// The radial frequency, in cycles per tile, of spectrum index `k` (row-major `v * TILE + u`; indices above
/// `TILE / 2` are negative frequencies).
pub(crate) fn radius(k: usize) -> f64 {
    let signed = |i: usize| if i > TILE / 2 { i as f64 - TILE as f64 } else { i as f64 };
    signed(k % TILE).hypot(signed(k / TILE))
}

/// The spectrum index of `-f` for index `k` (its complex conjugate in a real array's spectrum).
pub(crate) fn mirror(k: usize) -> usize {
    ((TILE - k / TILE) % TILE) * TILE + (TILE - k % TILE) % TILE
}
