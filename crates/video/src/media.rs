//! Reference media for conditioning: telling an image from a video by its bytes, reading an image, probing a
//! video without decoding it, and fitting frames to a video's size.
//!
//! Invariants: [`probe`] demuxes every packet of a video's stream (so a truncated file is refused) but decodes
//! none, and reads an image's header only; [`fit`] scales a frame to cover the target and centre-crops it, so the output is
//! always exactly `width × height × 3` bytes.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, RgbImage, imageops};

use crate::{MAX_DIMENSION, VideoError};

/// What kind of media some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// PNG, JPEG or WebP.
    Image,
    /// A video file FFmpeg's libraries read (MP4, MOV, MKV or WebM; H.264, H.265, VP9, AV1, …).
    Video,
}

/// What [`probe`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Image or video.
    pub kind: MediaKind,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames (1 for an image; the video stream's packets for a video).
    pub frames: u32,
}

fn unreadable(e: impl std::fmt::Display) -> VideoError {
    VideoError::Unreadable(e.to_string())
}

/// The kind of `bytes`: an image by its signature, otherwise a video when a container of
/// [`crate::CONTAINERS`] opens them.
pub fn sniff(bytes: &[u8]) -> Result<MediaKind, VideoError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => return Ok(MediaKind::Image),
        Ok(f) => return Err(unreadable(format!("{f:?} images are not accepted; send PNG, JPEG or WebP"))),
        Err(_) => {}
    }
    match crate::avio::MemoryInput::open(bytes) {
        Ok(_) => Ok(MediaKind::Video),
        Err(e) => Err(unreadable(format!("the data is neither an image (PNG, JPEG, WebP) nor a video ({e})"))),
    }
}

/// The kind, size and frame count of `bytes`, without decoding pixels (a video's packets are all read, so a
/// truncated file is an error).
pub fn probe(bytes: &[u8]) -> Result<Probe, VideoError> {
    match sniff(bytes)? {
        MediaKind::Image => {
            let (width, height) = ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(unreadable)?
                .into_dimensions()
                .map_err(|e| unreadable(format!("not a readable image: {e}")))?;
            Ok(Probe { kind: MediaKind::Image, width, height, frames: 1 })
        }
        MediaKind::Video => {
            let info = crate::decode::count_packets(bytes)?;
            Ok(Probe {
                kind: MediaKind::Video,
                width: info.width as u32,
                height: info.height as u32,
                frames: info.samples as u32,
            })
        }
    }
}

/// Decodes an image to RGB8: (width, height, pixels).
pub fn decode_image(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), VideoError> {
    let img = image::load_from_memory(bytes).map_err(|e| unreadable(format!("not a readable image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || w > 2 * MAX_DIMENSION || h > 2 * MAX_DIMENSION {
        return Err(unreadable(format!("image dimensions {w}x{h} are outside 1..={}", 2 * MAX_DIMENSION)));
    }
    Ok((w, h, img.to_rgb8().into_raw()))
}

/// An RGB8 frame of `sw`×`sh` scaled (bilinear) to cover `w`×`h` and centre-cropped to it.
pub fn fit(rgb: &[u8], sw: usize, sh: usize, w: usize, h: usize) -> Result<Vec<u8>, VideoError> {
    if (sw, sh) == (w, h) {
        return Ok(rgb.to_vec());
    }
    let src = RgbImage::from_raw(sw as u32, sh as u32, rgb.to_vec())
        .ok_or_else(|| VideoError::Invalid(format!("a {sw}x{sh} frame needs {} bytes", sw * sh * 3)))?;
    let scale = (w as f64 / sw as f64).max(h as f64 / sh as f64);
    let (cw, ch) =
        (((sw as f64 * scale).round() as u32).max(w as u32), ((sh as f64 * scale).round() as u32).max(h as u32));
    let scaled = imageops::resize(&src, cw, ch, imageops::FilterType::Triangle);
    let (x, y) = ((cw - w as u32) / 2, (ch - h as u32) / 2);
    Ok(imageops::crop_imm(&scaled, x, y, w as u32, h as u32).to_image().into_raw())
}
