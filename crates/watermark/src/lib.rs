//! Keyed invisible watermark for vidmesh videos (zero-bit: "made with this key: yes/no", with a p-value).
//!
//! Embedding adds a secret pattern to the luma of every frame, shared between R, G and B by their luma weights.
//! The pattern is a `TILE`×`TILE` tile of ±1 pixel signs from the key (SHA-256 of key and block index),
//! band-passed to spatial periods of about 6–21 pixels ([`BAND`]) and repeated across the frame — tiling turns a
//! crop into a cyclic shift. The band is where, on vidmesh-tiny outputs, signal surviving H.264 and a 0.5×
//! downscale is largest against the content left in the detector's residual: content noise is strongest at
//! longer periods, and a 0.5× downscale removes the shorter ones. Its amplitude is uniform (flat regions are
//! where a detector reads it best) and set per frame so the frame's PSNR is `Params::psnr_db`. Its sign follows
//! + − − + over the video's quarters ([`temporal_sign`]).
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
//! `psnr_db` (rounding can only add margin); detection memory is two residual planes whatever the video's length.

mod detect;
mod fft;
mod pattern;

pub use detect::{Accumulator, Detection, HYPOTHESES, Reference, SCALES, Suspect, detect, normal_tail};
pub use pattern::{Embedder, Key, Params, embed, psnr_of};

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

/// The pattern's frequency band in cycles per tile (radial, inclusive): periods of `TILE / 11` ≈ 5.8 to
/// `TILE / 3` ≈ 21 pixels.
pub const BAND: (f64, f64) = (3.0, 11.0);
