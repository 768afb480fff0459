//! Detection: per-frame residual (luma minus a range-gated local mean), averaged over the frames of each sign of
//! [`crate::temporal_sign`] and differenced (the pattern flips sign, static content does not), folded modulo the
//! tile at each candidate scale, whitened, and correlated with the key's tile over every cyclic shift (by FFT); the
//! best peak becomes a p-value.
//!
//! Whitening divides each frequency of the folded residual by the residual's own power around that frequency
//! (a 5×5 neighbourhood): the matched filter for coloured noise, so content energy that piles up at a few
//! frequencies (stripes, checkers, codec blocking) is discounted. The null spread is exact rather than estimated:
//! for a key unrelated to the video each shift's correlation is a random-phase sum of the suspect's whitened
//! frequencies, with variance `Σ_f |G(f)|² E|W(f)|²` (the expectation over keys, computed once). A spread estimated
//! from the surface (median absolute deviation) had heavy tails on videos marked with another key, whose smooth
//! surfaces hold few independent values; the p-value is `min(1, M · Q(z))` with `M` the number of (scale, shift) hypotheses tried (Bonferroni)
//! and `Q` the standard normal upper tail.
//!
//! [`Suspect`] holds everything that depends only on the video, so trying many keys (the key-shuffle null) costs
//! one inverse FFT per key and scale.

use rustfft::num_complex::Complex;
use vidmesh_video::Video;

use crate::TILE;
use crate::fft::Fft2;
use crate::key::Key;
use crate::pattern::tile;
use crate::payload::{Layout, Payload};
use crate::residual::{luma_milli, residual};

/// Candidate scales of the suspect relative to the original (1 = as generated, 0.5 = downscaled by half).
pub const SCALES: [f64; 3] = [1.0, 0.75, 0.5];

/// Number of (scale, shift) hypotheses one detection tries: the Bonferroni factor of its p-value.
pub const HYPOTHESES: usize = SCALES.len() * TILE * TILE;

/// A detection result.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Best peak in units of the null spread.
    pub z: f64,
    /// Probability of a peak this high without the watermark (Bonferroni over every hypothesis tried).
    pub p_value: f64,
    /// The scale that matched best.
    pub scale: f64,
    /// The cyclic shift (x, y) that matched best.
    pub shift: (usize, usize),
    /// The payload decoded at that scale and shift, when the reference knows the key's payload layout, the
    /// video carries one and it decodes (CRC and code-word correlation hold); `None` otherwise.
    pub payload: Option<Payload>,
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

/// E|W(f)|² over keys: the mean power spectrum of the key tile, from 512 fixed keys (computed once).
fn expected_power() -> &'static [f64] {
    static POWER: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    POWER.get_or_init(|| {
        let fft = Fft2::new();
        let mut acc = vec![0.0; TILE * TILE];
        const KEYS: u32 = 512;
        for i in 0..KEYS {
            let w = fft.forward_real(&tile(&Key::derive(format!("vidmesh-watermark null {i}").as_bytes()), &fft));
            acc.iter_mut().zip(&w).for_each(|(a, v)| *a += v.norm_sqr() / f64::from(KEYS));
        }
        acc
    })
}

/// The key's reference: the tile's spectrum, conjugated, and (for payload decoding) the key's payload layout.
pub struct Reference {
    spectrum: Vec<Complex<f64>>,
    layout: Option<Layout>,
}

impl Reference {
    /// The reference for `key`, payload decoding included.
    pub fn new(key: &Key) -> Self {
        let fft = Fft2::new();
        Self { layout: Some(Layout::new(key)), ..Self::with_fft(key, &fft) }
    }

    fn with_fft(key: &Key, fft: &Fft2) -> Self {
        Self { spectrum: fft.forward_real(&tile(key, fft)).iter().map(|c| c.conj()).collect(), layout: None }
    }
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

/// Divides every frequency by the residual's mean power over its 5×5 (cyclic) neighbourhood; DC is dropped.
fn whiten(spectrum: &[Complex<f64>]) -> Vec<Complex<f64>> {
    let power: Vec<f64> = spectrum.iter().map(|c| c.norm_sqr()).collect();
    let t = TILE as isize;
    let mut out = vec![Complex::new(0.0, 0.0); spectrum.len()];
    let floor = power.iter().sum::<f64>() / power.len() as f64 * 1e-6 + f64::MIN_POSITIVE;
    for v in 0..t {
        for u in 0..t {
            if u == 0 && v == 0 {
                continue;
            }
            let mut s = 0.0;
            for dv in -2..=2 {
                for du in -2..=2 {
                    s += power[((v + dv).rem_euclid(t) * t + (u + du).rem_euclid(t)) as usize];
                }
            }
            let k = (v * t + u) as usize;
            out[k] = spectrum[k] / (s / 25.0 + floor).sqrt();
        }
    }
    out
}

/// Builds a [`Suspect`] one RGB frame at a time (memory: two residual planes whatever the length; four when the
/// video is large enough to carry a payload).
pub struct Accumulator {
    width: usize,
    height: usize,
    total: usize,
    /// Residual sums of the frames whose pattern sign is + and −.
    sums: [Vec<f64>; 2],
    /// The same at the payload's gate, for videos large enough to carry a payload (or to be a crop or a 0.5×
    /// downscale of one).
    payload_sums: Option<[Vec<f64>; 2]>,
    counts: [usize; 2],
}

impl Accumulator {
    /// An empty accumulator for a video of `total` RGB8 frames of `width × height` (the frame count as the
    /// container declares it; frames may then be pushed sparsely, see [`Accumulator::push_at`]).
    pub fn new(width: usize, height: usize, total: usize) -> Self {
        let plane = vec![0.0; width * height];
        // A payload's residual wherever one may be found: videos that carry one, cropped or downscaled to 0.5×.
        let payload = width * height * total >= crate::Params::default().payload_min_samples / 4;
        let payload_sums = payload.then(|| [plane.clone(), plane.clone()]);
        Self { width, height, total: total.max(1), sums: [plane.clone(), plane], payload_sums, counts: [0, 0] }
    }

    /// Adds frame `index` (`width × height × 3` RGB8): its luma minus the content prediction (module `residual`).
    pub fn push_at(&mut self, index: usize, rgb: &[u8]) {
        let group = usize::from(crate::temporal_sign(index, self.total) < 0.0);
        let (r, wide) = residual(&luma_milli(rgb), self.width, self.height, self.payload_sums.is_some());
        self.sums[group].iter_mut().zip(r).for_each(|(a, v)| *a += v);
        if let (Some(sums), Some(wide)) = (&mut self.payload_sums, wide) {
            sums[group].iter_mut().zip(wide).for_each(|(a, v)| *a += v);
        }
        self.counts[group] += 1;
    }

    /// Frames added so far.
    pub fn frames(&self) -> usize {
        self.counts[0] + self.counts[1]
    }

    /// The prepared suspect: the mean residual of the + frames minus that of the − frames (static content
    /// cancels); with frames of one sign only (a trimmed clip), their mean with its sign.
    pub fn finish(self) -> Suspect {
        let difference = |sums: &[Vec<f64>; 2]| {
            let mut d = vec![0.0; self.width * self.height];
            for (group, (sum, &n)) in sums.iter().zip(&self.counts).enumerate() {
                if n > 0 {
                    let weight = if group == 0 { 1.0 } else { -1.0 } / n as f64;
                    d.iter_mut().zip(sum).for_each(|(o, v)| *o += weight * v);
                }
            }
            d
        };
        let fft = Fft2::new();
        let views = scale_views(&fft, &difference(&self.sums), self.width, self.height);
        let payload_views =
            self.payload_sums.as_ref().map(|s| scale_views(&fft, &difference(s), self.width, self.height));
        Suspect { fft, views, payload_views }
    }
}

/// A residual (`w × h`) folded modulo the tile at every candidate scale and whitened: (scale, spectrum) for each
/// scale at which it is not all zero.
fn scale_views(fft: &Fft2, residual: &[f64], w: usize, h: usize) -> Vec<(f64, Vec<Complex<f64>>)> {
    let mut views = Vec::new();
    for scale in SCALES {
        let (nw, nh) = (((w as f64 / scale).round() as usize).max(1), ((h as f64 / scale).round() as usize).max(1));
        let r = if scale == 1.0 { residual.to_vec() } else { resample(residual, w, h, nw, nh) };
        let (mut fold, mut count) = (vec![0.0; TILE * TILE], vec![0u32; TILE * TILE]);
        for j in 0..nh {
            for i in 0..nw {
                fold[(j % TILE) * TILE + i % TILE] += r[j * nw + i];
                count[(j % TILE) * TILE + i % TILE] += 1;
            }
        }
        for (f, c) in fold.iter_mut().zip(&count) {
            if *c > 0 {
                *f /= f64::from(*c);
            }
        }
        if fold.iter().all(|v| *v == 0.0) {
            continue;
        }
        views.push((scale, whiten(&fft.forward_real(&fold))));
    }
    views
}

/// Everything about a suspect video that does not depend on the key: its whitened, folded residual per scale
/// (and, for videos large enough to carry a payload, the same at the payload's gate).
pub struct Suspect {
    fft: Fft2,
    views: Vec<(f64, Vec<Complex<f64>>)>,
    payload_views: Option<Vec<(f64, Vec<Complex<f64>>)>>,
}

impl Suspect {
    /// Prepares the frames of `video` a detector with `budget` examines ([`crate::Budget`]).
    pub fn sampled(video: &Video, budget: &crate::Budget) -> Self {
        let n = video.frames.len();
        let stride = budget.stride(video.width, video.height, n);
        let mut acc = Accumulator::new(video.width, video.height, n);
        for (i, f) in video.frames.iter().enumerate().step_by(stride) {
            acc.push_at(i, f);
        }
        acc.finish()
    }

    /// Prepares `video` (any size ≥ 1×1, any number of frames ≥ 1).
    pub fn new(video: &Video) -> Self {
        let mut acc = Accumulator::new(video.width, video.height, video.frames.len());
        for (i, f) in video.frames.iter().enumerate() {
            acc.push_at(i, f);
        }
        acc.finish()
    }

    /// Looks for the reference's watermark.
    pub fn detect(&self, reference: &Reference) -> Detection {
        let mut best = Detection { z: 0.0, p_value: 1.0, scale: 1.0, shift: (0, 0), payload: None };
        let mut best_view = None;
        for (scale, g) in &self.views {
            let mut c: Vec<Complex<f64>> = g.iter().zip(&reference.spectrum).map(|(a, b)| a * b).collect();
            self.fft.run(&mut c, true);
            // The null spread is known without looking at the surface: for a key independent of the video, every
            // shift's correlation is a sum of the suspect's frequencies with random phases, so its variance is
            // Σ_f |G(f)|² · E|W(f)|² (E over keys). No estimate from the surface, hence no estimation noise in z.
            let var: f64 = g.iter().zip(expected_power()).map(|(a, p)| a.norm_sqr() * p).sum();
            if var <= 0.0 {
                continue;
            }
            let sigma = var.sqrt();
            let (k, peak) =
                c.iter().enumerate().map(|(k, v)| (k, v.re)).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
            let z = peak / sigma;
            if z > best.z {
                let p_value = (HYPOTHESES as f64 * normal_tail(z)).min(1.0);
                best = Detection { z, p_value, scale: *scale, shift: (k % TILE, k / TILE), payload: None };
                best_view = Some(g);
            }
        }
        if let (Some(layout), Some(g)) = (&reference.layout, best_view) {
            // Decoded where the detection peaked, from the payload gate's residual when there is one.
            let wide = self.payload_views.as_ref().and_then(|v| v.iter().find(|(s, _)| *s == best.scale));
            best.payload = layout.decode(wide.map_or(g, |(_, w)| w), best.shift);
        }
        best
    }

    /// A reference for `key` built with this suspect's FFT plans, without payload decoding (for many-key loops
    /// such as the key-shuffle null).
    pub fn reference(&self, key: &Key) -> Reference {
        Reference::with_fft(key, &self.fft)
    }
}

/// Looks for `key`'s watermark in `video`, and its payload.
pub fn detect(key: &Key, video: &Video) -> Detection {
    Suspect::new(video).detect(&Reference::new(key))
}
