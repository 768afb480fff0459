//! The watermark's payload: who made the video (a generator id) and which job (a tag), spread over a second,
//! higher frequency band of the tile and protected by a CRC and a convolutional code.
//!
//! Layout: 8-bit generator id + 16-bit job tag + CRC-8 = 32 bits → rate-1/2, constraint-length-7 convolutional
//! code (generators 171/133 octal, 6 zero tail bits) → [`CODED_BITS`] = 76 coded bits. Each coded bit owns a
//! key-chosen set of frequency pairs (±f) in [`PAYLOAD_BAND`], with key-chosen phases; the bit's sign multiplies
//! them. The payload tile is the sum over bits, unit RMS; it lies in a band disjoint from the detection band
//! [`crate::BAND`], so the two tiles are orthogonal and the zero-bit detection and its p-value do not depend on the
//! payload.
//!
//! Decoding happens at the (scale, shift) where the detection tile peaked: per coded bit, the correlation of the
//! suspect's whitened spectrum with the bit's frequencies, over its null spread, is a soft value; a soft-decision
//! Viterbi decoder picks the most likely message; it is returned only if its CRC holds and the correlation of
//! the re-encoded code word, in units of its null spread, reaches [`MIN_CODEWORD_Z`] (a random spectrum's best
//! code word stays far below: the decoder cannot invent a payload that is not there).
//!
//! Invariants: `decode(encode(p)) == p` on a clean channel; the payload tile has unit RMS and no energy outside
//! [`PAYLOAD_BAND`].

use rustfft::num_complex::Complex;
use sha2::{Digest as _, Sha256};

use crate::TILE;
use crate::fft::{Fft2, mirror, radius};
use crate::key::Key;

/// What a watermark carries besides "made with this key".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Payload {
    /// Which generator (deployment or bundle) made the video: an operator-chosen id.
    pub generator: u8,
    /// Which job made it: e.g. the low 16 bits of a hash of the job id (see [`Payload::tag_of`]).
    pub tag: u16,
}

impl Payload {
    /// A 16-bit tag for a job id (SHA-256, first two bytes): enough to tell jobs apart in an audit, not unique.
    pub fn tag_of(job_id: &str) -> u16 {
        let h = Sha256::digest(job_id.as_bytes());
        u16::from_be_bytes([h[0], h[1]])
    }

    fn message(self) -> [bool; MESSAGE_BITS] {
        let data = [self.generator, (self.tag >> 8) as u8, self.tag as u8];
        let crc = CRC8.checksum(&data);
        let mut bits = [false; MESSAGE_BITS];
        for (i, b) in data.iter().chain(std::iter::once(&crc)).enumerate() {
            for k in 0..8 {
                bits[i * 8 + k] = b >> (7 - k) & 1 == 1;
            }
        }
        bits
    }

    fn from_message(bits: &[bool]) -> Option<Self> {
        let bytes: Vec<u8> = bits.chunks_exact(8).map(|c| c.iter().fold(0u8, |a, &b| a << 1 | u8::from(b))).collect();
        (CRC8.checksum(&bytes[..3]) == bytes[3])
            .then(|| Self { generator: bytes[0], tag: u16::from_be_bytes([bytes[1], bytes[2]]) })
    }
}

const CRC8: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_AUTOSAR);

/// Information bits: generator (8) + tag (16) + CRC-8.
const MESSAGE_BITS: usize = 32;
/// Constraint length of the convolutional code.
const K: usize = 7;
/// Its generator polynomials (171, 133 octal: the CCSDS / Voyager code, free distance 10).
const POLYS: [u32; 2] = [0o171, 0o133];
/// Coded bits: (message + K−1 tail bits) × 2.
pub const CODED_BITS: usize = (MESSAGE_BITS + K - 1) * 2;
/// The payload's frequency band in cycles per tile (radial, inclusive): periods of 4–8 pixels, above the
/// detection band.
pub const PAYLOAD_BAND: (f64, f64) = (8.0, 16.0);
/// A decoded code word must correlate with the suspect at least this many null spreads.
pub const MIN_CODEWORD_Z: f64 = 7.0;

fn parity(x: u32) -> bool {
    x.count_ones() % 2 == 1
}

/// Convolutional encoding of the message with a zero tail (the trellis starts and ends in state 0).
fn convolve(message: &[bool]) -> Vec<bool> {
    let mut state = 0u32;
    let mut out = Vec::with_capacity((message.len() + K - 1) * 2);
    for &b in message.iter().chain(std::iter::repeat_n(&false, K - 1)) {
        let reg = u32::from(b) << (K - 1) | state;
        out.extend(POLYS.iter().map(|&g| parity(reg & g)));
        state = reg >> 1;
    }
    out
}

/// Soft-decision Viterbi decoding: the message whose code word has the largest correlation with `soft`
/// (positive = bit 1), ending in state 0.
fn viterbi(soft: &[f64]) -> Vec<bool> {
    const STATES: usize = 1 << (K - 1);
    let steps = soft.len() / 2;
    let mut metric = vec![f64::NEG_INFINITY; STATES];
    metric[0] = 0.0;
    // For every step and state: the previous state and the input bit of the best path into it.
    let mut from = vec![[(0u32, false); STATES]; steps];
    for (t, pair) in soft.chunks_exact(2).enumerate() {
        let mut next = vec![f64::NEG_INFINITY; STATES];
        for (state, &m) in metric.iter().enumerate() {
            if m == f64::NEG_INFINITY {
                continue;
            }
            for b in [false, true] {
                let reg = u32::from(b) << (K - 1) | state as u32;
                let gain: f64 =
                    POLYS.iter().zip(pair).map(|(&g, &y)| if parity(reg & g) { y } else { -y }).sum::<f64>();
                let to = (reg >> 1) as usize;
                if m + gain > next[to] {
                    next[to] = m + gain;
                    from[t][to] = (state as u32, b);
                }
            }
        }
        metric = next;
    }
    let mut state = 0usize;
    let mut bits = vec![false; steps];
    for t in (0..steps).rev() {
        let (prev, b) = from[t][state];
        bits[t] = b;
        state = prev as usize;
    }
    bits.truncate(steps - (K - 1));
    bits
}

/// The key's payload layout: for every coded bit, its frequencies (spectrum indices of the half-plane
/// representative) and their phases.
pub(crate) struct Layout {
    bits: Vec<Vec<(usize, Complex<f64>)>>,
}

impl Layout {
    /// Every frequency pair (f, −f) of the band, in a key-chosen order, dealt to the coded bits in turn, each with
    /// a key-chosen phase.
    pub(crate) fn new(key: &Key) -> Self {
        let mut pairs: Vec<(u64, usize, f64)> = Vec::new();
        for k in 0..TILE * TILE {
            // One representative per conjugate pair: the one whose index is smaller than its mirror's.
            if !(PAYLOAD_BAND.0..=PAYLOAD_BAND.1).contains(&radius(k)) || k >= mirror(k) {
                continue;
            }
            let h = Sha256::new()
                .chain_update(key.0)
                .chain_update(b"vidmesh-watermark-v3-payload")
                .chain_update((k as u32).to_le_bytes())
                .finalize();
            let order = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
            let phase = f64::from(u32::from_le_bytes(h[8..12].try_into().unwrap_or_default())) / 4_294_967_296.0
                * std::f64::consts::TAU;
            pairs.push((order, k, phase));
        }
        pairs.sort_unstable_by_key(|p| p.0);
        let mut bits = vec![Vec::new(); CODED_BITS];
        for (i, (_, k, phase)) in pairs.into_iter().enumerate() {
            bits[i % CODED_BITS].push((k, Complex::from_polar(1.0, phase)));
        }
        Self { bits }
    }

    /// The unit-RMS payload tile for `payload` (`TILE × TILE`, row-major).
    pub(crate) fn tile(&self, payload: Payload, fft: &Fft2) -> Vec<f64> {
        let coded = convolve(&payload.message());
        let mut spectrum = vec![Complex::new(0.0, 0.0); TILE * TILE];
        for (freqs, &bit) in self.bits.iter().zip(&coded) {
            let sign = if bit { 1.0 } else { -1.0 };
            for &(k, w) in freqs {
                spectrum[k] = w * sign;
                spectrum[mirror(k)] = (w * sign).conj();
            }
        }
        fft.run(&mut spectrum, true);
        let t: Vec<f64> = spectrum.iter().map(|c| c.re).collect();
        let rms = (t.iter().map(|v| v * v).sum::<f64>() / t.len() as f64).sqrt();
        t.iter().map(|v| v / rms).collect()
    }

    /// Decodes the payload from a suspect's whitened spectrum `g` at the detection's cyclic shift `(x, y)`.
    pub(crate) fn decode(&self, g: &[Complex<f64>], shift: (usize, usize)) -> Option<Payload> {
        let soft: Vec<f64> = self
            .bits
            .iter()
            .map(|freqs| {
                let (mut y, mut var) = (0.0, 0.0);
                for &(k, w) in freqs {
                    let (u, v) = ((k % TILE) as f64, (k / TILE) as f64);
                    let turn = std::f64::consts::TAU * (u * shift.0 as f64 + v * shift.1 as f64) / TILE as f64;
                    y += (g[k] * w.conj() * Complex::from_polar(1.0, turn)).re;
                    // A random-phase term's real part has half its power.
                    var += g[k].norm_sqr() / 2.0;
                }
                y / var.sqrt().max(f64::MIN_POSITIVE)
            })
            .collect();
        let message = viterbi(&soft);
        let payload = Payload::from_message(&message)?;
        let coded = convolve(&message);
        let z =
            coded.iter().zip(&soft).map(|(&b, &s)| if b { s } else { -s }).sum::<f64>() / (soft.len() as f64).sqrt();
        (z >= MIN_CODEWORD_Z).then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_code_corrects_errors_and_the_crc_refuses_garbage() {
        let p = Payload { generator: 0xA5, tag: 0xBEEF };
        let coded = convolve(&p.message());
        assert_eq!(coded.len(), CODED_BITS);
        let clean: Vec<f64> = coded.iter().map(|&b| if b { 1.0 } else { -1.0 }).collect();
        assert_eq!(Payload::from_message(&viterbi(&clean)), Some(p));
        // Four flipped coded bits far apart (free distance 10 corrects up to 4 in a window).
        let mut noisy = clean.clone();
        for i in [3, 25, 47, 69] {
            noisy[i] = -noisy[i];
        }
        assert_eq!(Payload::from_message(&viterbi(&noisy)), Some(p));
        // A corrupted message fails its CRC.
        let mut bits = p.message();
        bits[5] = !bits[5];
        assert_eq!(Payload::from_message(&bits), None);
    }

    #[test]
    fn the_payload_tile_is_unit_rms_in_its_band_and_key_specific() {
        let fft = Fft2::new();
        let (a, b) = (Layout::new(&Key::derive(b"a")), Layout::new(&Key::derive(b"b")));
        let p = Payload { generator: 1, tag: 2 };
        let t = a.tile(p, &fft);
        let rms = (t.iter().map(|v| v * v).sum::<f64>() / t.len() as f64).sqrt();
        assert!((rms - 1.0).abs() < 1e-9);
        let spectrum = fft.forward_real(&t);
        for (k, c) in spectrum.iter().enumerate() {
            if !(PAYLOAD_BAND.0..=PAYLOAD_BAND.1).contains(&radius(k)) {
                assert!(c.norm() < 1e-6, "energy at {k}");
            }
        }
        // Another key's tile for the same payload is nearly orthogonal.
        let u = b.tile(p, &fft);
        let dot = t.iter().zip(&u).map(|(x, y)| x * y).sum::<f64>() / t.len() as f64;
        assert!(dot.abs() < 0.15, "{dot}");
        // The tile decodes from its own clean spectrum at shift 0 and at a cyclic shift.
        assert_eq!(a.decode(&spectrum, (0, 0)), Some(p));
        let shifted: Vec<f64> =
            (0..TILE * TILE).map(|i| t[((i / TILE + 64 - 5) % 64) * TILE + (i % TILE + 64 - 9) % 64]).collect();
        assert_eq!(a.decode(&fft.forward_real(&shifted), (9, 5)), Some(p));
        assert_eq!(b.decode(&spectrum, (0, 0)), None);
    }

    #[test]
    fn noise_never_decodes_to_a_payload() {
        // 2,000 spectra of white noise at random shifts: the CRC alone passes 4 of them (about 1 in 256); the code-word
        // correlation threshold must refuse all.
        let layout = Layout::new(&Key::derive(b"noise"));
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut decoded = 0;
        for _ in 0..2000 {
            let g: Vec<Complex<f64>> =
                (0..TILE * TILE).map(|_| Complex::from_polar(1.0, uniform() * std::f64::consts::TAU)).collect();
            let shift = ((uniform() * 64.0) as usize, (uniform() * 64.0) as usize);
            decoded += usize::from(layout.decode(&g, shift).is_some());
        }
        assert_eq!(decoded, 0);
    }
}
