//! `vidmesh watermark`: any video (whatever FFmpeg's libraries decode) marked with a key by the decoder service's
//! embedder, written as an H.264 MP4 by the decoder's writer and, with a signer, C2PA-signed.
//!
//! Invariants: frames stream through one at a time (memory is one frame plus the encoded output); every frame is
//! marked with its place in the video's relative time (the frame count is known before decoding), so the output
//! is detected exactly like a video the decoder made; an odd width or height loses its last column or row
//! (yuv420p needs even sizes), never more; the output keeps the source's frame count and average frame rate.

use std::ops::ControlFlow;

use anyhow::{Context, Result, bail};
use sha2::Digest as _;
use vidmesh_provenance::{Claim, Signer};
use vidmesh_video::media::{self, MediaKind};
use vidmesh_video::{EncodeOptions, Mp4Writer, VideoError};
use vidmesh_watermark::{Embedder, Key, Params, Payload};

/// The frame rate written when the source does not declare one.
pub const FALLBACK_FPS: f64 = 24.0;

/// What [`watermark`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    /// Output width (the source's, made even).
    pub width: usize,
    /// Output height (the source's, made even).
    pub height: usize,
    /// Frames marked and written.
    pub frames: usize,
    /// Output frame rate.
    pub fps: f64,
    /// The source's codec.
    pub codec: String,
    /// PSNR of the marked frames against the decoded source, over all frames and channels (dB).
    pub psnr_db: f64,
    /// The same on luma (BT.601 weights), where the mark lives (dB).
    pub luma_psnr_db: f64,
    /// The payload embedded (carried when the video is large enough, see `Params::payload_min_samples`).
    pub payload: Payload,
    /// Whether a C2PA manifest was embedded.
    pub signed: bool,
}

/// The payload tag `vidmesh watermark` uses by default: [`Payload::tag_of`] the source's SHA-256 (hex).
pub fn default_tag(source: &[u8]) -> u16 {
    Payload::tag_of(&hex::encode(sha2::Sha256::digest(source)))
}

/// Marks `source` with `key` and `payload` (watermark `params`), encodes it as the decoder does and signs it with
/// `signer` when given. Blocking (decode, embed, encode).
pub fn watermark(
    source: &[u8],
    key: &Key,
    params: Params,
    payload: Payload,
    signer: Option<&Signer>,
) -> Result<(Vec<u8>, Marked)> {
    let probe = media::probe(source).context("the source")?;
    if probe.kind != MediaKind::Video {
        bail!("the source is an image; `vidmesh watermark` marks videos");
    }
    let (sw, sh) = (probe.width as usize, probe.height as usize);
    let (w, h) = (sw & !1, sh & !1);
    if w == 0 || h == 0 {
        bail!("the source is {sw}x{sh}; at least 2x2 pixels are needed");
    }
    let total = probe.frames as usize;
    let embedder = Embedder::new(key, params).with_payload(payload);
    let mut writer: Option<Mp4Writer> = None;
    let (mut se, mut luma_se, mut codec, mut fps) = (0.0, 0.0, String::new(), FALLBACK_FPS);
    let mut frame = vec![0u8; w * h * 3];
    let mut index = 0;
    let info = vidmesh_video::decode_video_each(source, |info, rgb| {
        if writer.is_none() {
            fps = if info.fps > 0.0 && info.fps <= 240.0 { info.fps } else { FALLBACK_FPS };
            codec.clone_from(&info.codec);
            writer = Some(Mp4Writer::new(w, h, fps, &EncodeOptions::default())?);
        }
        for (dst, src) in frame.chunks_exact_mut(w * 3).zip(rgb.chunks_exact(sw * 3)) {
            dst.copy_from_slice(&src[..w * 3]);
        }
        se += embedder.embed_frame(&mut frame, w, h, index, total);
        let luma = |p: &[u8]| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
        for (row, src) in frame.chunks_exact(w * 3).zip(rgb.chunks_exact(sw * 3)) {
            luma_se +=
                row.chunks_exact(3).zip(src.chunks_exact(3)).map(|(a, b)| (luma(a) - luma(b)).powi(2)).sum::<f64>();
        }
        index += 1;
        writer.as_mut().ok_or_else(|| VideoError::Invalid("no writer".into()))?.push(&frame)?;
        Ok(ControlFlow::Continue(()))
    })
    .context("decoding the source")?;
    let Some(writer) = writer else { bail!("the source has no decodable frames ({} corrupt)", info.damaged) };
    let mut mp4 = writer.finish().context("encoding the marked video")?;
    let signed = match signer {
        None => false,
        Some(s) => {
            let claim = Claim {
                model: String::new(),
                model_version: String::new(),
                parameters: serde_json::json!({
                    "marked_by": "vidmesh watermark",
                    "source_sha256": hex::encode(sha2::Sha256::digest(source)),
                    "source_codec": codec,
                }),
                prompt_sha256: String::new(),
            };
            mp4 = s.sign_mp4(&mp4, "video.mp4", &claim).context("signing the marked video")?;
            true
        }
    };
    let psnr_db = vidmesh_watermark::psnr_of(se, index * w * h * 3);
    let luma_psnr_db = vidmesh_watermark::psnr_of(luma_se, index * w * h);
    Ok((mp4, Marked { width: w, height: h, frames: index, fps, codec, psnr_db, luma_psnr_db, payload, signed }))
}
