//! Video bytes → RGB frames through FFmpeg's libraries (libavformat demuxes, libavcodec decodes, libswscale
//! converts): every codec and container Debian's FFmpeg reads — H.264 of any profile with B-frames, H.265/HEVC,
//! VP9 and AV1 in MP4, MOV, Matroska and WebM —, odd sizes and variable frame rates.
//!
//! Invariants: the bytes are read from memory (a custom AVIO context over the slice; nothing touches the file
//! system); frames come out in presentation order, each converted to packed RGB8 at the stream's coded size
//! (a frame of another size — a mid-stream resolution change — is scaled to it); dimensions are checked against
//! [`MAX_DIMENSION`] before anything is decoded; a packet the codec refuses is counted in
//! [`VideoInfo::damaged`] and skipped, and a frame it decodes with concealed errors is counted there and kept, as
//! players do; hostile bytes yield a [`VideoError`], never a panic. Memory
//! stays at one frame (plus the codec's reference frames) whatever the length.

use std::ops::ControlFlow;

use ff::format::context::Input;
use ff::media::Type;
use ff::software::scaling;
use ff::util::format::Pixel;
use ffmpeg_next as ff;

use crate::avio::MemoryInput;
use crate::{MAX_DIMENSION, Video, VideoError};

fn unreadable(e: impl std::fmt::Display) -> VideoError {
    VideoError::Unreadable(e.to_string())
}

/// What [`decode_video_each`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Average frame rate from the container (0 when it does not say).
    pub fps: f64,
    /// Packets (coded frames) of the video stream, counted before decoding.
    pub samples: usize,
    /// Frames decoded so far (in a visitor: including the one it is handed).
    pub frames: usize,
    /// Packets the codec rejected plus frames it reported damaged (decoded with concealed errors or missing
    /// references); decoding goes on past them, as players do.
    pub damaged: usize,
    /// The codec's short name (`h264`, `hevc`, `vp9`, `av1`, …).
    pub codec: String,
    /// The container's short names as FFmpeg reports them (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, …).
    pub container: String,
}

/// Decodes every frame of the best video stream of `bytes`.
pub fn decode_video(bytes: &[u8]) -> Result<Video, VideoError> {
    let mut frames = Vec::new();
    let info = decode_video_each(bytes, |_, rgb| {
        frames.push(rgb.to_vec());
        Ok(ControlFlow::Continue(()))
    })?;
    if frames.is_empty() {
        return Err(unreadable(format!("no decodable frames ({} corrupt packets)", info.damaged)));
    }
    Ok(Video { width: info.width, height: info.height, fps: info.fps, frames })
}

/// The best video stream's index, size, frame rate and codec, checked; the frame count is filled in separately.
fn stream_info(input: &Input) -> Result<(usize, VideoInfo, ff::codec::Parameters), VideoError> {
    let stream = input.streams().best(Type::Video).ok_or_else(|| unreadable("the file has no video stream"))?;
    let params = stream.parameters();
    let (w, h) = crate::avio::dimensions(&params);
    if w == 0 || h == 0 || w > MAX_DIMENSION || h > MAX_DIMENSION {
        return Err(unreadable(format!("the video's dimensions {w}x{h} are outside 1..={MAX_DIMENSION} per side")));
    }
    let rate = |r: ff::Rational| if r.denominator() != 0 { f64::from(r) } else { 0.0 };
    let fps = [rate(stream.avg_frame_rate()), rate(stream.rate())]
        .into_iter()
        .find(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)
        .unwrap_or(0.0);
    let codec = params.id().name().to_string();
    let info = VideoInfo {
        width: w,
        height: h,
        fps,
        samples: 0,
        frames: 0,
        damaged: 0,
        codec,
        container: input.format().name().to_string(),
    };
    Ok((stream.index(), info, params))
}

/// Reads the next packet of `stream`; `None` at the end. Read errors other than the end (a truncated or damaged
/// file) stop the read with an error naming how far it got.
fn next_packet(input: &mut Input, stream: usize, read: &mut usize) -> Result<Option<ff::Packet>, VideoError> {
    loop {
        let mut packet = ff::Packet::empty();
        match packet.read(input) {
            Ok(()) if packet.stream() == stream => {
                *read += 1;
                return Ok(Some(packet));
            }
            Ok(()) => {}
            Err(ff::Error::Eof) => return Ok(None),
            Err(e) => return Err(unreadable(format!("the file is truncated or damaged after {read} frames ({e})"))),
        }
    }
}

/// Counts the video packets of `bytes` (demuxing only). A file whose container declares more frames than it
/// holds is truncated: an error.
pub(crate) fn count_packets(bytes: &[u8]) -> Result<VideoInfo, VideoError> {
    let mut input = MemoryInput::open(bytes)?;
    let (stream, mut info, _) = stream_info(input.get())?;
    let declared = input.get().stream(stream).map(|s| s.frames()).unwrap_or(0);
    let mut n = 0;
    while let Some(p) = next_packet(input.get_mut(), stream, &mut n)? {
        if p.is_corrupt() {
            return Err(unreadable(format!("frame {n} is cut short: the file is truncated")));
        }
    }
    if n == 0 {
        return Err(unreadable("the video stream has no frames"));
    }
    if declared > 0 && (n as i64) < declared {
        return Err(unreadable(format!("the file holds {n} of the {declared} frames it declares: it is truncated")));
    }
    info.samples = n;
    Ok(info)
}

/// Decodes the best video stream of `bytes` one frame at a time: `visit(info_so_far, rgb)` sees each RGB8 frame
/// in presentation order and stops the decode early with `ControlFlow::Break` (or an error). `info.samples` is
/// known before the first frame (a demux pass counts the packets), so a visitor can spread its choice of frames
/// over the whole video. Frames may be 0 when every packet is corrupt.
pub fn decode_video_each(
    bytes: &[u8],
    mut visit: impl FnMut(&VideoInfo, &[u8]) -> Result<ControlFlow<()>, VideoError>,
) -> Result<VideoInfo, VideoError> {
    let mut info = count_packets(bytes)?;
    let mut input = MemoryInput::open(bytes)?;
    let (stream, _, params) = stream_info(input.get())?;
    let mut context = ff::codec::context::Context::from_parameters(params).map_err(unreadable)?;
    // Frame and slice threads, as many as the codec likes: decoding is most of the time on large videos.
    context.set_threading(ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| unreadable(format!("no decoder for the {} stream in this FFmpeg ({e})", info.codec)))?;
    let (w, h) = (info.width, info.height);
    let mut converter = Converter::new(w, h);
    let mut frame = ff::frame::Video::empty();
    let mut read = 0;
    let mut drain = |decoder: &mut ff::decoder::Video, info: &mut VideoInfo| -> Result<bool, VideoError> {
        while decoder.receive_frame(&mut frame).is_ok() {
            info.damaged += usize::from(crate::avio::damaged(&frame));
            let rgb = converter.rgb(&frame)?;
            info.frames += 1;
            if visit(info, rgb)?.is_break() {
                return Ok(true);
            }
        }
        Ok(false)
    };
    while let Some(packet) = next_packet(input.get_mut(), stream, &mut read)? {
        if decoder.send_packet(&packet).is_err() {
            info.damaged += 1;
        }
        if drain(&mut decoder, &mut info)? {
            return Ok(info);
        }
    }
    // Flushing: the frames the codec still holds (B-frame reordering, frame threads).
    if decoder.send_eof().is_ok() {
        drain(&mut decoder, &mut info)?;
    }
    if info.frames == 0 && info.damaged == 0 {
        return Err(unreadable("no decodable frames"));
    }
    Ok(info)
}

/// Any decoded frame → packed RGB8 of the stream's size, through a cached swscale context.
struct Converter {
    w: usize,
    h: usize,
    scaler: Option<(Pixel, u32, u32, scaling::Context)>,
    out: ff::frame::Video,
    rgb: Vec<u8>,
}

impl Converter {
    fn new(w: usize, h: usize) -> Self {
        Self { w, h, scaler: None, out: ff::frame::Video::empty(), rgb: vec![0; w * h * 3] }
    }

    fn rgb(&mut self, frame: &ff::frame::Video) -> Result<&[u8], VideoError> {
        let key = (frame.format(), frame.width(), frame.height());
        if key.1 == 0 || key.2 == 0 || key.1 as usize > MAX_DIMENSION || key.2 as usize > MAX_DIMENSION {
            return Err(unreadable(format!("a frame is {}x{}", key.1, key.2)));
        }
        if self.scaler.as_ref().is_none_or(|(f, w, h, _)| (*f, *w, *h) != key) {
            let s = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                self.w as u32,
                self.h as u32,
                scaling::Flags::BILINEAR | scaling::Flags::ACCURATE_RND | scaling::Flags::FULL_CHR_H_INT,
            )
            .map_err(|e| VideoError::Codec(format!("no conversion from {:?} to RGB ({e})", key.0)))?;
            self.scaler = Some((key.0, key.1, key.2, s));
        }
        let (.., scaler) = self.scaler.as_mut().expect("set above");
        scaler.run(frame, &mut self.out).map_err(|e| VideoError::Codec(format!("converting a frame to RGB: {e}")))?;
        let (stride, row) = (self.out.stride(0), self.w * 3);
        let data = self.out.data(0);
        for (y, dst) in self.rgb.chunks_exact_mut(row).enumerate() {
            dst.copy_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(&self.rgb)
    }
}
