//! Media → latents for conditioning (the Encode RPC's hot path): an image, or a video decoded frame by frame, is
//! fitted to the video's size ([`vidmesh_video::media::fit`]: scaled to cover, centre-cropped), converted to
//! [-1, 1] and run through the bundle's VAE encoder `chunk` latent frames at a time (batch 1); each run's latent
//! means are scaled into the DiT's space, `x = (mean − mean[c]) · div[c]` (the inverse of the decoder's
//! unnormalisation).
//!
//! Invariants: at most one run's frames are held (`chunk × temporal_compression`), whatever the source's length;
//! a video is cut to a whole number of latent frames (the encoder needs `temporal_compression` frames per latent
//! frame); an image (or a `still` video's first frame) is repeated to the asked frame count.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use ort::session::Session;
use vidmesh_model::{Bundle, LatentNorm, Manifest, Onnx};
use vidmesh_runtime::TensorF32;
use vidmesh_video::media::{self, MediaKind};

use crate::error::Error;

/// What to encode the source as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ask {
    /// Video width.
    pub width: usize,
    /// Video height.
    pub height: usize,
    /// Frames to encode (0 = all of a video's, cut to whole latent frames; an image: one latent frame).
    pub frames: usize,
    /// Take only a video's first frame, as an image.
    pub still: bool,
}

/// What the source was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Encoded {
    /// Source width.
    pub source_width: usize,
    /// Source height.
    pub source_height: usize,
    /// Frames encoded.
    pub frames: usize,
    /// Whether the source was an image.
    pub image: bool,
}

/// The bundle's VAE encoder graph.
#[derive(Clone)]
pub struct VaeEncoder {
    session: Arc<Mutex<Session>>,
    input: String,
    output: String,
    norm: LatentNorm,
    manifest: Manifest,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

impl VaeEncoder {
    /// Opens the bundle's encoder graph (sha256-checked); `None` when the bundle has none.
    pub fn load(bundle: &Bundle, onnx: &Onnx) -> Result<Option<Self>, Error> {
        let m = &bundle.manifest;
        let Some(c) = &m.vae.encoder else { return Ok(None) };
        let session = onnx.checked_session(bundle, "vae.encoder", c)?;
        let name = |ios: &[vidmesh_model::Io], what: &str| {
            ios.first().map(|io| io.name.clone()).ok_or_else(|| Error::Inference(format!("vae.encoder has no {what}")))
        };
        Ok(Some(Self {
            session: Arc::new(Mutex::new(session)),
            input: name(&c.inputs, "input")?,
            output: name(&c.outputs, "output")?,
            norm: m.vae.norm(),
            manifest: m.clone(),
        }))
    }

    /// Encodes `media` (blocking); `progress(frames_done)` after every run. Returns the latents [C, T', h, w].
    pub fn encode(
        &self,
        media_bytes: &[u8],
        ask: Ask,
        chunk: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<(TensorF32, Encoded), Error> {
        let m = &self.manifest;
        let tc = m.vae.temporal_compression;
        if !ask.frames.is_multiple_of(tc) {
            return Err(bad(format!(
                "frames {} is not a multiple of {tc} (the VAE's temporal compression)",
                ask.frames
            )));
        }
        let kind = media::sniff(media_bytes).map_err(|e| bad(format!("the reference: {e}")))?;
        let per_run = chunk.max(1) * tc;
        let mut runs = Runs { enc: self, ask, buf: Vec::with_capacity(per_run), per_run, latents: Vec::new(), done: 0 };
        let check = |w: usize, h: usize| {
            m.check_reference_size(w as u32, h as u32, ask.width as u32, ask.height as u32).map_err(bad)
        };
        let fitted = |rgb: &[u8], w: usize, h: usize| {
            media::fit(rgb, w, h, ask.width, ask.height).map_err(|e| Error::Inference(e.to_string()))
        };
        let (source_width, source_height, image) = match kind {
            MediaKind::Image => {
                let (w, h, rgb) = media::decode_image(media_bytes).map_err(|e| bad(format!("the reference: {e}")))?;
                check(w, h)?;
                let frame = fitted(&rgb, w, h)?;
                for _ in 0..ask.frames.max(tc) {
                    runs.push(frame.clone(), &mut progress)?;
                }
                (w, h, true)
            }
            MediaKind::Video => {
                let mut size = (0, 0);
                let mut failure = None;
                let visit = |info: &vidmesh_video::VideoInfo, rgb: &[u8]| {
                    let step = (|| {
                        if size == (0, 0) {
                            size = (info.width, info.height);
                            check(info.width, info.height)?;
                        }
                        let frame = fitted(rgb, info.width, info.height)?;
                        if ask.still {
                            for _ in 0..ask.frames.max(tc) {
                                runs.push(frame.clone(), &mut progress)?;
                            }
                            return Ok(true);
                        }
                        runs.push(frame, &mut progress)?;
                        Ok(ask.frames > 0 && runs.done + runs.buf.len() == ask.frames)
                    })();
                    match step {
                        Ok(false) => Ok(ControlFlow::Continue(())),
                        Ok(true) => Ok(ControlFlow::Break(())),
                        Err(e) => {
                            failure = Some(e);
                            Ok(ControlFlow::Break(()))
                        }
                    }
                };
                let decoded = vidmesh_video::decode_video_each(media_bytes, visit);
                if let Some(e) = failure {
                    return Err(e);
                }
                decoded.map_err(|e| bad(format!("the reference video: {e}")))?;
                (size.0, size.1, false)
            }
        };
        // A video's last partial latent frame is cut.
        let whole = runs.buf.len() - runs.buf.len() % tc;
        runs.buf.truncate(whole);
        runs.flush(&mut progress)?;
        if runs.done == 0 {
            return Err(bad(format!("the reference video has fewer than {tc} frames (one latent frame)")));
        }
        if ask.frames > 0 && runs.done < ask.frames {
            return Err(bad(format!("the reference video has {} usable frames; {} are needed", runs.done, ask.frames)));
        }
        let latents = runs.assemble();
        Ok((latents, Encoded { source_width, source_height, frames: runs.done, image }))
    }

    /// One run over `frames` (RGB8, each fitted): [C, n/tc, h, w] scaled latents, one Vec per latent frame.
    fn run(&self, frames: &[Vec<u8>], ask: Ask) -> Result<Vec<Vec<f32>>, Error> {
        let (w, h, n) = (ask.width, ask.height, frames.len());
        let plane = w * h;
        let mut video = vec![0f32; 3 * n * plane];
        for (f, rgb) in frames.iter().enumerate() {
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    video[(c * n + f) * plane + i] = f32::from(px[c]) / 127.5 - 1.0;
                }
            }
        }
        let input =
            ort::value::Tensor::from_array(([1, 3, n, h, w], video)).map_err(|e| Error::Inference(e.to_string()))?;
        let mut session = self.session.lock().map_err(|_| Error::Inference("VAE encoder lock poisoned".into()))?;
        let outputs =
            session.run(ort::inputs![self.input.as_str() => input]).map_err(|e| Error::Inference(e.to_string()))?;
        let (dims, mean) =
            outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(|e| Error::Inference(e.to_string()))?;
        let m = &self.manifest;
        let (c, t) = (m.vae.latent_channels, n / m.vae.temporal_compression);
        let sc = m.vae.spatial_compression;
        let (lh, lw) = (h / sc, w / sc);
        let want = [1, c as i64, t as i64, lh as i64, lw as i64];
        if dims[..] != want[..] {
            return Err(Error::Inference(format!("the VAE encoder returned {dims:?}; expected {want:?}")));
        }
        let lp = lh * lw;
        Ok((0..t)
            .map(|ti| {
                (0..c)
                    .flat_map(|ch| {
                        let (div, mu) = (self.norm.div[ch], self.norm.mean[ch]);
                        mean[(ch * t + ti) * lp..(ch * t + ti + 1) * lp].iter().map(move |x| (x - mu) * div)
                    })
                    .collect()
            })
            .collect())
    }
}

/// Frames waiting for a run, and the latent frames made so far.
struct Runs<'a> {
    enc: &'a VaeEncoder,
    ask: Ask,
    buf: Vec<Vec<u8>>,
    per_run: usize,
    /// One [C, h, w] block per latent frame.
    latents: Vec<Vec<f32>>,
    done: usize,
}

impl Runs<'_> {
    fn push(&mut self, frame: Vec<u8>, progress: &mut impl FnMut(usize)) -> Result<(), Error> {
        self.buf.push(frame);
        if self.buf.len() == self.per_run { self.flush(progress) } else { Ok(()) }
    }

    fn flush(&mut self, progress: &mut impl FnMut(usize)) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blocks = self.enc.run(&self.buf, self.ask)?;
        self.latents.extend(blocks);
        self.done += self.buf.len();
        self.buf.clear();
        progress(self.done);
        Ok(())
    }

    /// The latent frames as one [C, T', h, w] tensor.
    fn assemble(&self) -> TensorF32 {
        let m = &self.enc.manifest;
        let (c, sc) = (m.vae.latent_channels, m.vae.spatial_compression);
        let (h, w, t) = (self.ask.height / sc, self.ask.width / sc, self.latents.len());
        let plane = h * w;
        let mut data = vec![0f32; c * t * plane];
        for (ti, block) in self.latents.iter().enumerate() {
            for ch in 0..c {
                data[(ch * t + ti) * plane..(ch * t + ti + 1) * plane]
                    .copy_from_slice(&block[ch * plane..(ch + 1) * plane]);
            }
        }
        TensorF32::new(vec![c, t, h, w], data)
    }
}
