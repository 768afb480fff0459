//! Detection: high-pass, average over frames, fold modulo the tile at each candidate scale, correlate with the
//! key's tile over every cyclic shift (by FFT), and turn the peak into a p-value.
//!
//! The null spread is estimated from the same correlation surface (median absolute deviation over all shifts), so
//! the z-score accounts for the residual's own spatial correlation; the p-value is `min(1, M · Q(z))` with `M` the
//! number of (scale, shift) hypotheses tried (Bonferroni) and `Q` the standard normal upper tail.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use vidmesh_video::Video;

use crate::TILE;
use crate::pattern::{Key, luma, tile};

/// Candidate scales of the suspect relative to the original (1 = as generated, 0.5 = downscaled by half).
pub const SCALES: [f64; 2] = [1.0, 0.5];

/// A detection result.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Peak normalised correlation in [-1, 1].
    pub correlation: f64,
    /// Peak in units of the null spread.
    pub z: f64,
    /// Probability of a peak this high without the watermark (Bonferroni over every hypothesis tried).
    pub p_value: f64,
    /// The scale that matched best.
    pub scale: f64,
    /// The cyclic shift (x, y) that matched best.
    pub shift: (usize, usize),
}

/// `y - box_blur(y)` with a 5×5 box (clamped borders): removes the content's low frequencies.
fn high_pass(y: &[f64], w: usize, h: usize, cyclic: bool) -> Vec<f64> {
    let at = |i: isize, j: isize| -> f64 {
        let (i, j) = if cyclic {
            (i.rem_euclid(w as isize) as usize, j.rem_euclid(h as isize) as usize)
        } else {
            (i.clamp(0, w as isize - 1) as usize, j.clamp(0, h as isize - 1) as usize)
        };
        y[j * w + i]
    };
    let mut out = vec![0.0; w * h];
    for j in 0..h as isize {
        for i in 0..w as isize {
            let mut s = 0.0;
            for dj in -2..=2 {
                for di in -2..=2 {
                    s += at(i + di, j + dj);
                }
            }
            out[j as usize * w + i as usize] = y[j as usize * w + i as usize] - s / 25.0;
        }
    }
    out
}

/// Bilinear resample of `src` (w×h) to (nw×nh).
fn resample(src: &[f64], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f64> {
    let mut out = vec![0.0; nw * nh];
    for j in 0..nh {
        for i in 0..nw {
            let fx = ((i as f64 + 0.5) * w as f64 / nw as f64 - 0.5).clamp(0.0, (w - 1) as f64);
            let fy = ((j as f64 + 0.5) * h as f64 / nh as f64 - 0.5).clamp(0.0, (h - 1) as f64);
            let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (ax, ay) = (fx - x0 as f64, fy - y0 as f64);
            out[j * nw + i] = (1.0 - ay) * ((1.0 - ax) * src[y0 * w + x0] + ax * src[y0 * w + x1])
                + ay * ((1.0 - ax) * src[y1 * w + x0] + ax * src[y1 * w + x1]);
        }
    }
    out
}

fn fft2(data: &mut [Complex<f64>], inverse: bool) {
    let mut planner = FftPlanner::new();
    let fft = if inverse { planner.plan_fft_inverse(TILE) } else { planner.plan_fft_forward(TILE) };
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

/// Circular cross-correlation `c[s] = Σ a[p] · b[p + s]` of two TILE×TILE arrays.
fn correlate(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut fa: Vec<Complex<f64>> = a.iter().map(|&v| Complex::new(v, 0.0)).collect();
    let mut fb: Vec<Complex<f64>> = b.iter().map(|&v| Complex::new(v, 0.0)).collect();
    fft2(&mut fa, false);
    fft2(&mut fb, false);
    let mut prod: Vec<Complex<f64>> = fa.iter().zip(&fb).map(|(x, y)| x.conj() * y).collect();
    fft2(&mut prod, true);
    let n = (TILE * TILE) as f64;
    prod.iter().map(|c| c.re / n).collect()
}

/// Standard normal upper tail Q(z) = P(Z > z), via erfc (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
pub fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// The frames' high-passed luma, averaged.
fn average_residual(video: &Video) -> Vec<f64> {
    let (w, h) = (video.width, video.height);
    let mut acc = vec![0.0; w * h];
    for f in &video.frames {
        for (a, r) in acc.iter_mut().zip(high_pass(&luma(f), w, h, false)) {
            *a += r;
        }
    }
    let n = video.frames.len().max(1) as f64;
    acc.iter_mut().for_each(|a| *a /= n);
    acc
}

/// Looks for `key`'s watermark in `video`.
pub fn detect(key: &Key, video: &Video) -> Detection {
    let reference = high_pass(&tile(key), TILE, TILE, true);
    let residual = average_residual(video);
    let (w, h) = (video.width, video.height);
    let mut best = Detection { correlation: 0.0, z: 0.0, p_value: 1.0, scale: 1.0, shift: (0, 0) };
    let hypotheses = (SCALES.len() * TILE * TILE) as f64;
    for scale in SCALES {
        let (nw, nh) = (((w as f64 / scale).round() as usize).max(1), ((h as f64 / scale).round() as usize).max(1));
        let r = if scale == 1.0 { residual.clone() } else { resample(&residual, w, h, nw, nh) };
        let mut fold = vec![0.0; TILE * TILE];
        for j in 0..nh {
            for i in 0..nw {
                fold[(j % TILE) * TILE + i % TILE] += r[j * nw + i];
            }
        }
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let (nf, nr) = (norm(&fold), norm(&reference));
        if nf == 0.0 || nr == 0.0 {
            continue;
        }
        let c: Vec<f64> = correlate(&fold, &reference).iter().map(|v| v / (nf * nr)).collect();
        let mut abs: Vec<f64> = c.iter().map(|v| v.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let sigma = abs[abs.len() / 2] / 0.674_489_75; // MAD of a zero-mean Gaussian
        let (k, &peak) = c.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap_or((0, &0.0));
        let z = if sigma > 0.0 { peak / sigma } else { 0.0 };
        if z > best.z {
            best = Detection {
                correlation: peak,
                z,
                p_value: (hypotheses * normal_tail(z)).min(1.0),
                scale,
                shift: (k % TILE, k / TILE),
            };
        }
    }
    best
}
