//! The bundle's seeded noise (`[noise] rng = "philox4x32-10-boxmuller"`, docs/model-bundle.md), bit-identical to
//! models/vidmesh_tiny/noise.py: Philox4x32-10 blocks of counter (b_lo, b_hi, stream, 0) under key
//! (seed_lo, seed_hi), two Box–Muller pairs per block computed in f64 with the C library's log/cos/sin, rounded to
//! f32. Stream 0 is the initial latent noise, `1 + i` what a stochastic sampler adds at step i
//! ([`STREAM_DECODE`] is the decoder's).

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(c[0]) * u64::from(M0);
        let p1 = u64::from(c[2]) * u64::from(M1);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

fn box_muller(a: u32, b: u32) -> (f32, f32) {
    const SCALE: f64 = 1.0 / 4_294_967_296.0;
    let u1 = (f64::from(a) + 1.0) * SCALE;
    let u2 = f64::from(b) * SCALE;
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = 2.0 * std::f64::consts::PI * u2;
    ((r * theta.cos()) as f32, (r * theta.sin()) as f32)
}

/// The stream of the noise mixed into the latents before a timestep-conditioned VAE decoder (LTX-Video).
pub const STREAM_DECODE: u32 = u32::MAX;

/// The first `n` standard normals of `seed`'s initial-noise stream (stream 0).
pub fn gaussian(seed: u64, n: usize) -> Vec<f32> {
    gaussian_stream(seed, 0, n)
}

/// The first `n` standard normals of `seed`'s stream `stream`.
pub fn gaussian_stream(seed: u64, stream: u32, n: usize) -> Vec<f32> {
    let key = [seed as u32, (seed >> 32) as u32];
    let mut out = Vec::with_capacity(n.div_ceil(4) * 4);
    for b in 0..n.div_ceil(4) as u64 {
        let x = philox4x32_10([b as u32, (b >> 32) as u32, stream, 0], key);
        let (g0, g1) = box_muller(x[0], x[1]);
        let (g2, g3) = box_muller(x[2], x[3]);
        out.extend_from_slice(&[g0, g1, g2, g3]);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random123_known_answer() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
    }

    #[test]
    fn seed_42_first_normals() {
        assert_eq!(gaussian(42, 4), vec![-0.970_189_8, 0.194_018_96, -1.235_620_7, 1.923_926_7]);
        assert_eq!(gaussian(42, 3), gaussian(42, 8)[..3]);
    }
}
