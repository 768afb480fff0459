//! Reference media for conditioning: telling an image from a video by its bytes, reading an image, probing an MP4
//! without decoding it, and fitting frames to a video's size.
//!
//! Invariants: [`probe`] reads every sample of the track (so a truncated file is refused) but decodes none, and
//! reads an image's header only; [`fit`] scales a frame to cover the target and centre-crops it, so the output is
//! always exactly `width × height × 3` bytes.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, RgbImage, imageops};

use crate::{MAX_DIMENSION, VideoError};

/// What kind of media some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// PNG, JPEG or WebP.
    Image,
    /// An MP4 (ISO BMFF) file.
    Mp4,
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
    /// Frames (1 for an image; the track's samples for a video).
    pub frames: u32,
}

fn unreadable(e: impl std::fmt::Display) -> VideoError {
    VideoError::Unreadable(e.to_string())
}

/// The kind of `bytes`, from their signature.
pub fn sniff(bytes: &[u8]) -> Result<MediaKind, VideoError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => return Ok(MediaKind::Image),
        Ok(f) => return Err(unreadable(format!("{f:?} images are not accepted; send PNG, JPEG or WebP"))),
        Err(_) => {}
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Ok(MediaKind::Mp4);
    }
    Err(unreadable("the data is neither an image (PNG, JPEG, WebP) nor an MP4 video"))
}

/// The kind, size and frame count of `bytes`, without decoding pixels (an MP4's samples are all read, so a
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
        MediaKind::Mp4 => {
            let mut reader = mp4::Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64)
                .map_err(|e| unreadable(format!("the MP4 is truncated or damaged ({e})")))?;
            let (id, width, height) = reader
                .tracks()
                .iter()
                .find(|(_, t)| matches!(t.media_type(), Ok(mp4::MediaType::H264)))
                .map(|(id, t)| (*id, u32::from(t.width()), u32::from(t.height())))
                .ok_or_else(|| unreadable("no H.264 video track"))?;
            let count = reader.sample_count(id).map_err(unreadable)?;
            for i in 1..=count {
                match reader.read_sample(id, i) {
                    Ok(Some(s)) if !s.bytes.is_empty() => {}
                    _ => return Err(unreadable(format!("sample {i} of {count} is missing: the file is truncated"))),
                }
            }
            if count == 0 {
                return Err(unreadable("the video track has no frames"));
            }
            Ok(Probe { kind: MediaKind::Mp4, width, height, frames: count })
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
