//! Keyed invisible watermark for vidmesh videos: "made with this key: yes/no" with a p-value, and a payload
//! (generator id + job tag) in videos large enough to carry one.
//!
//! Embedding adds a secret pattern to the luma of every frame, shared between R, G and B by their luma weights.
//! The detection pattern is a `TILE`×`TILE` tile of ±1 pixel signs from the key (SHA-256 of key and block index),
//! band-passed to spatial periods of about 9–32 pixels ([`BAND`]) and repeated across the frame — tiling turns a
//! crop into a cyclic shift. The band is where, on vidmesh-tiny outputs, the pattern best survives the hardest
//! attack measured (crop, 0.5× downscale, brightening and an H.264 re-encode together): a downscaled clip's
//! encoder keeps long periods in a few large transform coefficients, above its dead zone. Its amplitude is uniform
//! (flat regions are where a detector reads it best) and set per frame so the frame's PSNR is `Params::psnr_db`.
//! Its sign follows + − − + over the video's quarters ([`temporal_sign`]). The payload ([`Payload`], module
//! `payload`) is a second tile in a disjoint, higher band ([`PAYLOAD_BAND`]), mixed in with
//! `Params::payload_share` of the energy when the video has at least `Params::payload_min_samples` pixels × frames.
//!
//! Detection subtracts from each frame a content prediction (the mean of nearby pixels of similar luma, which
//! reproduces flat areas, stripes and edges but not the low-amplitude pattern), takes the mean residual of the
//! frames where the sign is + minus that where it is − (static content — textured backgrounds — cancels, the
//! pattern adds up; moving content averages down; dropped or re-timed frames keep their sign), folds it modulo
//! the tile at each candidate scale, whitens its spectrum and correlates with the key's tile over every cyclic
//! shift. The p-value is a Gaussian tail at the peak's z with a Bonferroni factor for every shift and scale
//! tried; its calibration is checked against a key-shuffle null (tests/robustness.rs, bench watermark_eval).
//!
//! Invariants: the same key and video always give the same output; every embedded frame's PSNR is at least
//! `psnr_db` (rounding can only add margin); detection memory is two residual planes whatever the video's length
//! (four in videos large enough to carry a payload, which is decoded from a residual at a wider range gate); the
//! detection's z and p-value come from the detection band and gate alone (decoding a payload cannot change them;
//! a payload only takes its share of the energy); a video below `payload_min_samples` is marked exactly as
//! without a payload.

mod budget;
mod detect;
mod fft;
mod key;
mod pattern;
mod payload;
mod residual;

pub use budget::Budget;
pub use detect::{Accumulator, Detection, HYPOTHESES, Reference, SCALES, Suspect, detect, normal_tail};
pub use key::Key;
pub use pattern::{Embedder, Params, embed, psnr_of};
pub use payload::{CODED_BITS, MIN_CODEWORD_Z, PAYLOAD_BAND, Payload};

/// Tile side in pixels at the video's own resolution.
pub const TILE: usize = 64;
/// The pattern's sign over the video's relative time, by quarters: + − − +. Detection takes the difference of
/// the mean residuals of the + and − frames, so static content (textured backgrounds) cancels exactly, and so
/// does content that brightens or darkens steadily, while the pattern adds up; by relative time, dropped frames
/// and frame-rate changes keep every frame in its quarter.
pub fn temporal_sign(index: usize, total: usize) -> f64 {
    let quarter = 4 * index / total.max(1);
    if quarter == 1 || quarter == 2 { -1.0 } else { 1.0 }
}

/// The pattern's frequency band in cycles per tile (radial, inclusive): periods of `TILE / 7` ≈ 9 to `TILE / 2` =
/// 32 pixels.
pub const BAND: (f64, f64) = (2.0, 7.0);
