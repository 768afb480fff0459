//! The keyed pattern and its embedding.

use sha2::{Digest as _, Sha256};
use vidmesh_video::Video;

use rustfft::num_complex::Complex;

use crate::fft::{Fft2, radius};
use crate::key::Key;
use crate::payload::{Layout, Payload};
use crate::{BAND, TILE};

/// Embedding strength and the payload's share of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The PSNR over R, G and B each frame's change is scaled to, in dB (after rounding and clipping). The mark is
    /// a luma change, whose luma-only PSNR is 1.2 dB lower: the default 43.3 keeps every frame, and so the video,
    /// at or above 42 dB on luma (42.1 measured).
    pub psnr_db: f64,
    /// The fraction of the watermark's energy given to the payload when one is carried (the detection pattern
    /// keeps the rest, so its z falls by `sqrt(1 - share)`).
    pub payload_share: f64,
    /// The payload is carried only in videos of at least this many pixels × frames: below it the whole budget
    /// goes to detection (a 64×64, 16-frame clip has a quarter of what a 32-bit payload needs next to a robust
    /// detection; docs/detection.md).
    pub payload_min_samples: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self { psnr_db: 43.3, payload_share: 0.25, payload_min_samples: 256 * 256 * 16 }
    }
}

/// The key's ±1 pixel signs, `TILE × TILE` (SHA-256 of key, version and block index, bit by bit).
fn signs(key: &Key) -> Vec<f64> {
    let mut out = Vec::with_capacity(TILE * TILE);
    let mut block = 0u32;
    while out.len() < TILE * TILE {
        let h = Sha256::new()
            .chain_update(key.0)
            .chain_update(b"vidmesh-watermark-v3")
            .chain_update(block.to_le_bytes())
            .finalize();
        for byte in h {
            for bit in 0..8 {
                out.push(if byte >> bit & 1 == 1 { 1.0 } else { -1.0 });
            }
        }
        block += 1;
    }
    out.truncate(TILE * TILE);
    out
}

/// Whether spectrum index `k` lies in the pattern's band [`BAND`] (radial, cycles per tile).
fn in_band(k: usize) -> bool {
    (BAND.0..=BAND.1).contains(&radius(k))
}

/// The zero-mean, unit-RMS tile (`TILE × TILE`): the key's ±1 pixel signs band-passed to [`BAND`] (an ideal
/// radial filter in the tile's cyclic frequency domain), so the tile stays periodic. `fft` is the caller's plan
/// (many-key loops build it once).
pub(crate) fn tile(key: &Key, fft: &Fft2) -> Vec<f64> {
    let mut spectrum = fft.forward_real(&signs(key));
    for (k, c) in spectrum.iter_mut().enumerate() {
        if !in_band(k) {
            *c = Complex::new(0.0, 0.0);
        }
    }
    fft.run(&mut spectrum, true);
    let t: Vec<f64> = spectrum.iter().map(|c| c.re).collect();
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let rms = (t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / t.len() as f64).sqrt();
    t.iter().map(|v| (v - mean) / rms).collect()
}

/// How the luma delta is shared between R, G and B: proportional to each channel's luma weight, scaled so that
/// the squared error summed over the three channels equals three times the luma delta's square — 16% more luma
/// change than the same delta on all three channels at the same PSNR (the chroma it moves is the price).
const CHANNEL: [f64; 3] = {
    const L: [f64; 3] = [0.299, 0.587, 0.114];
    // sqrt(3) / |L|, with |L| = sqrt(0.299² + 0.587² + 0.114²) = 0.668_542_4.
    const K: f64 = 1.732_050_807_568_877_2 / 0.668_542_4;
    [L[0] * K, L[1] * K, L[2] * K]
};

/// Embeds one key's watermark frame by frame (for writers that stream frames).
#[derive(Clone)]
pub struct Embedder {
    /// The detection tile alone.
    tile: Vec<f64>,
    /// Detection and payload tiles mixed by `params.payload_share`, when a payload was given.
    with_payload: Option<Vec<f64>>,
    layout: std::sync::Arc<Layout>,
    params: Params,
}

impl Embedder {
    /// An embedder for `key` that carries no payload.
    pub fn new(key: &Key, params: Params) -> Self {
        Self { tile: tile(key, &Fft2::new()), with_payload: None, layout: Layout::new(key).into(), params }
    }

    /// The same embedder carrying `payload` in videos of at least `params.payload_min_samples` pixels × frames.
    pub fn with_payload(&self, payload: Payload) -> Self {
        let share = self.params.payload_share.clamp(0.0, 1.0);
        let p = self.layout.tile(payload, &Fft2::new());
        // The tiles occupy disjoint bands, so they are orthogonal and the mix keeps unit RMS.
        let mixed = self.tile.iter().zip(&p).map(|(d, p)| (1.0 - share).sqrt() * d + share.sqrt() * p).collect();
        Self { with_payload: Some(mixed), ..self.clone() }
    }

    /// Embeds into every frame of `video`; returns the PSNR (dB) of the change over the whole video.
    pub fn embed_video(&self, video: &mut Video) -> f64 {
        let (w, h) = (video.width, video.height);
        let total = video.frames.len();
        let se: f64 = video.frames.iter_mut().enumerate().map(|(i, f)| self.embed_frame(f, w, h, i, total)).sum();
        psnr_of(se, video.frames.len() * w * h * 3)
    }

    /// Embeds into frame `index` of `total` (RGB, `w × h`) in place; returns the squared error summed over its
    /// samples.
    ///
    /// The delta `s · sign · pattern` goes onto R, G and B in proportion to their luma weights ([`CHANNEL`];
    /// `sign` from [`crate::temporal_sign`]), with the amplitude `s` chosen (by bisection) so that the frame's
    /// PSNR after rounding and clipping is `params.psnr_db`: energy that clipping would lose at black or white is
    /// spent where it survives instead.
    pub fn embed_frame(&self, frame: &mut [u8], w: usize, h: usize, index: usize, total: usize) -> f64 {
        let sign = crate::temporal_sign(index, total);
        let tile = match &self.with_payload {
            Some(mixed) if w * h * total >= self.params.payload_min_samples => mixed,
            _ => &self.tile,
        };
        let pattern = |j: usize, i: usize| sign * tile[(j % TILE) * TILE + i % TILE];
        let apply = |s: f64, out: Option<&mut [u8]>| -> f64 {
            let mut se = 0.0;
            let mut out = out;
            for j in 0..h {
                for i in 0..w {
                    let d = s * pattern(j, i);
                    for (c, weight) in CHANNEL.iter().enumerate() {
                        let k = (j * w + i) * 3 + c;
                        let p = f64::from(frame[k]);
                        // Rounded half up after clamping: the same as `round().clamp(0, 255)` here, without
                        // the libm call `round` is on baseline x86-64 (no SSE4.1), which cost a third of the time.
                        let v = f64::from(((p + d * weight).clamp(0.0, 255.0) + 0.5) as u8);
                        se += (v - p).powi(2);
                        if let Some(o) = out.as_deref_mut() {
                            o[k] = v as u8;
                        }
                    }
                }
            }
            se
        };
        let target = 255.0f64.powi(2) / 10f64.powf(self.params.psnr_db / 10.0) * (w * h * 3) as f64;
        let (mut lo, mut hi) = (0.0, 16.0);
        for _ in 0..14 {
            let mid = 0.5 * (lo + hi);
            if apply(mid, None) > target { hi = mid } else { lo = mid }
        }
        let mut marked = frame.to_vec();
        let se = apply(lo, Some(&mut marked));
        frame.copy_from_slice(&marked);
        se
    }
}

/// PSNR in dB of a summed squared error over `samples` 8-bit samples.
pub fn psnr_of(se: f64, samples: usize) -> f64 {
    vidmesh_video::psnr_from_mse(se / samples.max(1) as f64)
}

/// Embeds the key's watermark (no payload) into every frame; returns the PSNR (dB) of the change over the whole
/// video.
pub fn embed(key: &Key, video: &mut Video, params: &Params) -> f64 {
    Embedder::new(key, *params).embed_video(video)
}
