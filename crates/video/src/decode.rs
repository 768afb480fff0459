//! MP4 → frames: the first H.264 track is demuxed (mp4 crate), its length-prefixed samples are turned into Annex B
//! with the avcC parameter sets in front, and decoded with openh264. Hostile input yields an error, not a panic.

use std::io::Cursor;
use std::ops::ControlFlow;

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::formats::YUVSource as _;

use crate::{MAX_DIMENSION, Video, VideoError};

const START: [u8; 4] = [0, 0, 0, 1];

fn unreadable(e: impl std::fmt::Display) -> VideoError {
    VideoError::Unreadable(e.to_string())
}

/// Length-prefixed (4-byte) NAL units → Annex B.
fn to_annex_b(sample: &[u8], out: &mut Vec<u8>) -> Result<(), VideoError> {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(unreadable("truncated NAL length"));
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let nal = rest.get(4..4 + n).ok_or_else(|| unreadable("NAL unit runs past its sample"))?;
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
        rest = &rest[4 + n..];
    }
    Ok(())
}

/// What [`decode_mp4_each`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Frame rate from the track (0 when the file does not say).
    pub fps: f64,
    /// Samples (coded frames) in the track, known before decoding.
    pub samples: usize,
    /// Frames decoded.
    pub frames: usize,
    /// Samples the codec rejected (corrupt data); decoding goes on past them, as players do.
    pub damaged: usize,
}

/// Decodes every frame of the first H.264 track of an MP4 file.
pub fn decode_mp4(bytes: &[u8]) -> Result<Video, VideoError> {
    let mut frames = Vec::new();
    let info = decode_mp4_each(bytes, |_, rgb| {
        frames.push(rgb.to_vec());
        Ok(ControlFlow::Continue(()))
    })?;
    if frames.is_empty() {
        return Err(unreadable(format!("no decodable frames ({} corrupt samples)", info.damaged)));
    }
    Ok(Video { width: info.width, height: info.height, fps: info.fps, frames })
}

/// Decodes the first H.264 track of an MP4 file one frame at a time: `visit(info_so_far, rgb)` sees each RGB8
/// frame in output order and stops the decode early with `ControlFlow::Break` (or an error). Memory stays at one frame whatever the
/// length; dimensions are checked against [`MAX_DIMENSION`] before anything is decoded. A sample the codec rejects
/// is counted in [`VideoInfo::damaged`] and skipped (so `frames` may be 0 when every sample is corrupt); a file
/// that ends early is an error.
pub fn decode_mp4_each(
    bytes: &[u8],
    mut visit: impl FnMut(&VideoInfo, &[u8]) -> Result<ControlFlow<()>, VideoError>,
) -> Result<VideoInfo, VideoError> {
    let mut reader = mp4::Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64).map_err(unreadable)?;
    let (track_id, sps, pps, fps, (w, h)) = {
        let (id, track) = reader
            .tracks()
            .iter()
            .find(|(_, t)| matches!(t.media_type(), Ok(mp4::MediaType::H264)))
            .ok_or_else(|| unreadable("no H.264 video track"))?;
        let sps = track.sequence_parameter_set().map_err(unreadable)?.to_vec();
        let pps = track.picture_parameter_set().map_err(unreadable)?.to_vec();
        (*id, sps, pps, track.frame_rate(), (usize::from(track.width()), usize::from(track.height())))
    };
    if w == 0 || h == 0 || w > MAX_DIMENSION || h > MAX_DIMENSION {
        return Err(unreadable(format!("track dimensions {w}x{h} are outside 1..={MAX_DIMENSION}")));
    }
    let fps = if fps.is_finite() && fps > 0.0 { fps } else { 0.0 };
    let count = reader.sample_count(track_id).map_err(unreadable)?;
    let mut info = VideoInfo { width: w, height: h, fps, samples: count as usize, frames: 0, damaged: 0 };
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| VideoError::Codec(e.to_string()))?;
    let mut rgb = vec![0u8; w * h * 3];
    let mut push =
        |yuv: &openh264::decoder::DecodedYUV<'_>, info: &mut VideoInfo| -> Result<ControlFlow<()>, VideoError> {
            let (dw, dh) = yuv.dimensions();
            if (dw, dh) != (w, h) {
                return Err(unreadable(format!("decoded {dw}x{dh} frames in a {w}x{h} track")));
            }
            yuv.write_rgb8(&mut rgb);
            info.frames += 1;
            visit(info, &rgb)
        };
    for id in 1..=count {
        let sample =
            reader.read_sample(track_id, id).map_err(unreadable)?.ok_or_else(|| unreadable("missing sample"))?;
        let mut packet = Vec::with_capacity(sample.bytes.len() + sps.len() + pps.len() + 12);
        if id == 1 {
            for ps in [&sps, &pps] {
                packet.extend_from_slice(&START);
                packet.extend_from_slice(ps);
            }
        }
        to_annex_b(&sample.bytes, &mut packet)?;
        match decoder.decode(&packet) {
            Ok(Some(yuv)) => {
                if push(&yuv, &mut info)?.is_break() {
                    return Ok(info);
                }
            }
            Ok(None) => {}
            Err(_) => info.damaged += 1,
        }
    }
    for yuv in decoder.flush_remaining().map_err(|e| unreadable(e.to_string()))? {
        if push(&yuv, &mut info)?.is_break() {
            return Ok(info);
        }
    }
    if info.frames == 0 && info.damaged == 0 {
        return Err(unreadable("no decodable frames"));
    }
    Ok(info)
}
