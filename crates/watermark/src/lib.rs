//! Keyed invisible watermark for vidmesh videos (zero-bit: "made with this key: yes/no", with a p-value).
//!
//! Embedding adds a secret ±1 pattern to the luma of every frame (the same delta on R, G and B moves luma only).
//! The pattern is a `TILE`×`TILE` tile of `CELL`×`CELL` cells, each +1 or −1 from the key (SHA-256 of key and cell
//! index), smoothed bilinearly and repeated across the frame — tiling turns a crop into a cyclic shift, and cells
//! of 4 pixels keep most of their energy through H.264 and a 0.5× downscale. Its amplitude is uniform (flat
//! regions are where a detector reads it best) and set per frame so the frame's PSNR is `Params::psnr_db`. Its
//! sign flips at mid-video ([`temporal_sign`]).
//!
//! Detection subtracts from each frame a content prediction (the mean of nearby pixels of similar luma, which
//! reproduces flat areas, stripes and edges but not the low-amplitude pattern), takes the first half's mean
//! residual minus the second half's (static content — textured backgrounds — cancels, the pattern doubles; moving
//! content averages down; dropped or re-timed frames keep their half), folds it modulo the tile at each candidate
//! scale, whitens its spectrum and correlates with the key's tile over every
//! cyclic shift. The p-value is a Gaussian tail at the peak's z with a Bonferroni factor for every shift and scale
//! tried; its calibration is checked against a key-shuffle null (tests/robustness.rs, bench watermark_eval).
//!
//! Invariants: the same key and video always give the same output; every embedded frame's PSNR is at least
//! `psnr_db` (rounding can only add margin); detection memory is two residual planes whatever the video's length.

mod detect;
mod pattern;

pub use detect::{Accumulator, Detection, HYPOTHESES, Reference, SCALES, Suspect, detect, normal_tail};
pub use pattern::{Embedder, Key, Params, embed, psnr_of};

/// Tile side in pixels at the video's own resolution.
pub const TILE: usize = 64;
/// The pattern's sign over the video's relative time: + in the first half, − in the second. Detection takes the
/// difference of the halves' mean residuals, so static content (textured backgrounds) cancels exactly while the
/// pattern adds up; by relative time, dropped frames and frame-rate changes keep every frame in its half.
pub fn temporal_sign(index: usize, total: usize) -> f64 {
    if 2 * index < total.max(1) { 1.0 } else { -1.0 }
}

/// Cell side in pixels: the pattern's smallest feature.
pub const CELL: usize = 4;
