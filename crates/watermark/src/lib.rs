//! Keyed invisible watermark for vidmesh videos (first version: zero-bit, i.e. "made by us: yes/no").
//!
//! Embedding adds a secret, low-frequency ±1 pattern to the luma of every frame (the same delta on R, G and B moves
//! luma only), scaled by a perceptual mask that puts more energy where the frame has texture. The pattern is a
//! `TILE`×`TILE` tile of `CELL`×`CELL` cells, each +1 or −1 from the key (SHA-256 of key and cell index), smoothed
//! bilinearly and repeated across the frame — tiling turns a crop into a cyclic shift, and low frequencies survive
//! H.264 and downscaling.
//!
//! Detection high-passes each frame's luma, averages over frames (content moves, the pattern does not; dropped or
//! re-timed frames only cost averaging gain), folds the average modulo the tile at each candidate scale, and takes
//! the best normalised correlation with the key's (high-passed) tile over every cyclic shift. The p-value is
//! analytic — a Gaussian tail at `z = c·sqrt(cells)` with a Bonferroni factor for every shift and scale tried —
//! and its calibration is checked against a key-shuffle null (tests/robustness.rs).
//!
//! Invariants: the same key and video always give the same output; the watermark's PSNR is set by `strength`
//! (RMS luma change before masking normalisation, in 8-bit levels) and reported by [`embed`].

mod detect;
mod pattern;

pub use detect::{Detection, detect};
pub use pattern::{Embedder, Key, Params, embed, psnr_of};

/// Tile side in pixels at the video's own resolution.
pub const TILE: usize = 64;
/// Cell side in pixels: the pattern's smallest feature.
pub const CELL: usize = 4;
