//! Video files for vidmesh: RGB frames → MP4 (H.264 in yuv420p by openh264, `moov` before `mdat` so browsers
//! start playing before the download ends), any common video file → RGB frames (FFmpeg's libavformat and
//! libavcodec: H.264, H.265, VP9, AV1, … in MP4, MOV, MKV, WebM), plus PNG/JPEG thumbnails and spritesheets.
//!
//! Invariants: a [`Video`] always holds `frames.len() ≥ 1` frames of exactly `width × height × 3` bytes; encoding
//! refuses odd or oversized dimensions and non-finite or non-positive fps before any work; decoding never panics
//! on hostile bytes (truncated files, non-video data, missing streams) — it returns a [`VideoError`].

mod avio;
mod decode;
mod encode;
pub mod media;
mod quality;
mod still;

pub use avio::CONTAINERS;
pub use decode::{VideoInfo, decode_video, decode_video_each};
pub use encode::{EncodeOptions, Mp4Writer, encode_mp4};
pub use quality::{luma_psnr, luma_ssim, psnr, psnr_from_mse};
pub use still::{png_frame, spritesheet, thumbnail_jpeg, thumbnail_png};

/// Largest width or height accepted (H.264 level 5.2 allows 4096 × 2304 at most in practice).
pub const MAX_DIMENSION: usize = 4096;

/// Why a video could not be made or read. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The frames or options are not encodable.
    #[error("invalid video: {0}")]
    Invalid(String),
    /// The bytes are not a readable video (or image, where one is accepted).
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// The codec failed.
    #[error("codec: {0}")]
    Codec(String),
    /// Image encoding failed.
    #[error("image: {0}")]
    Image(String),
}

/// RGB8 frames at a frame rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Frames per second.
    pub fps: f64,
    /// Frames, each `width * height * 3` bytes, row-major RGB.
    pub frames: Vec<Vec<u8>>,
}

impl Video {
    /// Checks the invariants (see the crate docs).
    pub fn validate(&self) -> Result<(), VideoError> {
        let bad = |m: String| Err(VideoError::Invalid(m));
        if self.frames.is_empty() {
            return bad("no frames".into());
        }
        if self.width == 0 || self.height == 0 || self.width > MAX_DIMENSION || self.height > MAX_DIMENSION {
            return bad(format!("{}x{} is outside 1..={MAX_DIMENSION} per side", self.width, self.height));
        }
        if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
            return bad(format!("{}x{}: yuv420p needs even width and height", self.width, self.height));
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 240.0) {
            return bad(format!("fps {} must be in (0, 240]", self.fps));
        }
        let n = self.width * self.height * 3;
        if let Some(i) = self.frames.iter().position(|f| f.len() != n) {
            return bad(format!("frame {i} has {} bytes, expected {n}", self.frames[i].len()));
        }
        Ok(())
    }

    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.frames.len() as f64 / self.fps
    }
}
