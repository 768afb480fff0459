//! The keyed pattern and its embedding.

use sha2::{Digest as _, Sha256};
use vidmesh_video::Video;

use crate::{CELL, TILE};

/// A 256-bit watermark key (from config/secret in production).
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)") // never print the secret
    }
}

impl Key {
    /// A key derived from arbitrary bytes (SHA-256), e.g. a passphrase in tests.
    pub fn derive(material: &[u8]) -> Self {
        Self(Sha256::digest(material).into())
    }
}

/// Embedding strength.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The PSNR each frame's change is scaled to, in dB (after rounding and clipping). 42.2 keeps every frame,
    /// and so the video, at or above 42 dB.
    pub psnr_db: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { psnr_db: 42.2 }
    }
}

const CELLS: usize = TILE / CELL;

/// The key's ±1 cell signs, `CELLS × CELLS`.
fn signs(key: &Key) -> Vec<f64> {
    let mut out = Vec::with_capacity(CELLS * CELLS);
    let mut block = 0u32;
    while out.len() < CELLS * CELLS {
        let h = Sha256::new()
            .chain_update(key.0)
            .chain_update(b"vidmesh-watermark-v1")
            .chain_update(block.to_le_bytes())
            .finalize();
        for byte in h {
            for bit in 0..8 {
                if out.len() < CELLS * CELLS {
                    out.push(if byte >> bit & 1 == 1 { 1.0 } else { -1.0 });
                }
            }
        }
        block += 1;
    }
    out
}

/// The smoothed, zero-mean, unit-RMS tile (`TILE × TILE`, cyclic bilinear interpolation between cell centres).
pub(crate) fn tile(key: &Key) -> Vec<f64> {
    let s = signs(key);
    let at = |cx: isize, cy: isize| {
        s[cy.rem_euclid(CELLS as isize) as usize * CELLS + cx.rem_euclid(CELLS as isize) as usize]
    };
    let mut t = vec![0.0; TILE * TILE];
    for y in 0..TILE {
        for x in 0..TILE {
            let fx = (x as f64 + 0.5) / CELL as f64 - 0.5;
            let fy = (y as f64 + 0.5) / CELL as f64 - 0.5;
            let (x0, y0) = (fx.floor(), fy.floor());
            let (ax, ay) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            t[y * TILE + x] = (1.0 - ay) * ((1.0 - ax) * at(x0, y0) + ax * at(x0 + 1, y0))
                + ay * ((1.0 - ax) * at(x0, y0 + 1) + ax * at(x0 + 1, y0 + 1));
        }
    }
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let rms = (t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / t.len() as f64).sqrt();
    t.iter().map(|v| (v - mean) / rms).collect()
}

/// Embeds one key's watermark frame by frame (for writers that stream frames).
pub struct Embedder {
    tile: Vec<f64>,
    params: Params,
}

impl Embedder {
    /// An embedder for `key`.
    pub fn new(key: &Key, params: Params) -> Self {
        Self { tile: tile(key), params }
    }

    /// Embeds into frame `index` of `total` (RGB, `w × h`) in place; returns the squared error summed over its
    /// samples.
    ///
    /// The same luma delta `s · sign · pattern` goes onto R, G and B (`sign` from [`crate::temporal_sign`]), with the amplitude `s` chosen (by bisection) so
    /// that the frame's PSNR after rounding and clipping is `params.psnr_db`: energy that clipping would lose at
    /// black or white is spent where it survives instead.
    pub fn embed_frame(&self, frame: &mut [u8], w: usize, h: usize, index: usize, total: usize) -> f64 {
        let sign = crate::temporal_sign(index, total);
        let pattern = |j: usize, i: usize| sign * self.tile[(j % TILE) * TILE + i % TILE];
        let apply = |s: f64, out: Option<&mut [u8]>| -> f64 {
            let mut se = 0.0;
            let mut out = out;
            for j in 0..h {
                for i in 0..w {
                    let d = s * pattern(j, i);
                    for c in 0..3 {
                        let k = (j * w + i) * 3 + c;
                        let p = f64::from(frame[k]);
                        let v = (p + d).round().clamp(0.0, 255.0);
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

/// Embeds the key's watermark into every frame; returns the PSNR (dB) of the change over the whole video.
pub fn embed(key: &Key, video: &mut Video, params: &Params) -> f64 {
    let e = Embedder::new(key, *params);
    let (w, h) = (video.width, video.height);
    let total = video.frames.len();
    let se: f64 = video.frames.iter_mut().enumerate().map(|(i, f)| e.embed_frame(f, w, h, i, total)).sum();
    psnr_of(se, video.frames.len() * w * h * 3)
}
