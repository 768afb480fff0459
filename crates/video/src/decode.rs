//! MP4 → frames: the first H.264 track is demuxed (mp4 crate), its length-prefixed samples are turned into Annex B
//! with the avcC parameter sets in front, and decoded with openh264. Hostile input yields an error, not a panic.

use std::io::Cursor;

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

/// Decodes every frame of the first H.264 track of an MP4 file.
pub fn decode_mp4(bytes: &[u8]) -> Result<Video, VideoError> {
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
    let count = reader.sample_count(track_id).map_err(unreadable)?;
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| VideoError::Codec(e.to_string()))?;
    let mut frames = Vec::with_capacity(count as usize);
    let mut push = |yuv: &openh264::decoder::DecodedYUV<'_>| -> Result<(), VideoError> {
        let (dw, dh) = yuv.dimensions();
        if (dw, dh) != (w, h) {
            return Err(unreadable(format!("decoded {dw}x{dh} frames in a {w}x{h} track")));
        }
        let mut rgb = vec![0u8; w * h * 3];
        yuv.write_rgb8(&mut rgb);
        frames.push(rgb);
        Ok(())
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
        if let Some(yuv) = decoder.decode(&packet).map_err(|e| unreadable(format!("sample {id}: {e}")))? {
            push(&yuv)?;
        }
    }
    for yuv in decoder.flush_remaining().map_err(|e| unreadable(e.to_string()))? {
        push(&yuv)?;
    }
    if frames.is_empty() {
        return Err(unreadable("no decodable frames"));
    }
    Ok(Video { width: w, height: h, fps: if fps.is_finite() && fps > 0.0 { fps } else { 0.0 }, frames })
}
