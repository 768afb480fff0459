//! The classifier's hot path, free of gRPC: video bytes (any codec and container FFmpeg's libraries read) →
//! frames (streamed, one in memory at a time) → watermark
//! detection and C2PA validation → one verdict.
//!
//! Invariants: a request never holds more than one decoded frame plus one luma plane; the frames examined are
//! those [`vidmesh_watermark::Budget`] picks (`max_frames`, `max_pixels`), the same rule the evaluation uses; admission is bounded (excess is refused at once, before the source is read); hostile bytes yield
//! InvalidArgument, never a panic.

pub mod passive;
pub mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use vidmesh_provenance::Provenance;
use vidmesh_storage::Storage;
use vidmesh_video::decode_video_each;
use vidmesh_watermark::{Accumulator, Detection, Key, Reference};

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use passive::Passive;
use verdict::{PassiveView, Thresholds, Verdict, combine};
use vidmesh_runtime::status::Refusal;

/// Opens the bundle's passive detector when `model.bundle` is set (blocking: ORT session creation).
pub fn load_passive(
    config: &Config,
    env: &std::collections::HashMap<String, String>,
) -> Result<Option<Passive>, Error> {
    if config.model.bundle.is_empty() {
        tracing::warn!("model.bundle is empty: no passive evidence");
        return Ok(None);
    }
    let bundle = config.model.open(&[vidmesh_model::Part::Passive])?;
    let Some(spec) = bundle.manifest.passive.clone() else {
        tracing::warn!(bundle = %config.model.bundle, "the bundle has no [passive] detector: no passive evidence");
        return Ok(None);
    };
    let onnx = vidmesh_model::Onnx::init(&config.onnxruntime, env)?;
    let session = onnx.checked_session(&bundle, "passive", &spec.component)?;
    Ok(Some(Passive::new(session, spec)))
}

/// Where the video to examine comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Video file bytes.
    Video(Bytes),
    /// A storage URI the classifier can read.
    Uri(String),
}

/// What one examination found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The combined verdict.
    pub verdict: Verdict,
    /// One reason per piece of evidence.
    pub reasons: Vec<String>,
    /// Watermark detection.
    pub watermark: Detection,
    /// Whether the watermark met the "generated" threshold.
    pub watermark_detected: bool,
    /// C2PA state.
    pub c2pa: Provenance,
    /// Passive detector's view and the frames it scored (None without a passive model).
    pub passive: Option<(PassiveView, usize)>,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Frames examined.
    pub frames: usize,
    /// Decode + detection time.
    pub elapsed: Duration,
}

/// The loaded classifier.
pub struct Classifier {
    reference: Reference,
    passive: Option<Passive>,
    trust_anchors: Vec<u8>,
    storage: Arc<dyn Storage>,
    thresholds: Thresholds,
    max_video_bytes: usize,
    budget: vidmesh_watermark::Budget,
    permits: Arc<Semaphore>,
}

impl Classifier {
    /// Parses the key, reads the trust anchors and opens the storage.
    pub async fn load(config: &Config, passive: Option<Passive>) -> Result<Self, Error> {
        // The thresholds were validated with the config; the key may be left empty there, but not here.
        let key = Key::from_hex(&config.watermark.key_hex)
            .ok_or_else(|| Error::Config("watermark.key_hex must be 64 hex digits (the decoder's key)".into()))?;
        let w = &config.watermark;
        let path = &config.c2pa.trust_anchors_path;
        let trust_anchors = if path.is_empty() {
            tracing::warn!("c2pa.trust_anchors_path is empty: no C2PA manifest will be TRUSTED");
            Vec::new()
        } else {
            std::fs::read(path).map_err(|e| Error::Config(format!("c2pa.trust_anchors_path {path:?}: {e}")))?
        };
        Ok(Self {
            reference: Reference::new(&key),
            passive,
            trust_anchors,
            storage: config.storage.open().await?,
            thresholds: Thresholds { generated: w.p_generated, inconclusive: w.p_inconclusive },
            max_video_bytes: config.max_video_bytes,
            budget: vidmesh_watermark::Budget { max_frames: config.max_frames, max_pixels: config.max_pixels },
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
        })
    }

    /// One detection: admitted (or refused at once), the source read, examined on a blocking thread, counted in
    /// `metrics`.
    pub async fn detect(self: Arc<Self>, source: Source, metrics: &Metrics) -> Result<Report, Error> {
        let _permit = self.admit()?;
        metrics.active.inc();
        let result = async {
            let bytes = match source {
                Source::Video(bytes) => bytes,
                Source::Uri(uri) => self.fetch(&uri).await?,
            };
            tokio::task::spawn_blocking(move || self.examine(&bytes))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
        }
        .await;
        metrics.active.dec();
        let outcome = match &result {
            Ok(r) => match r.verdict {
                Verdict::Generated => "generated",
                Verdict::Inconclusive => "inconclusive",
                Verdict::NotDetected => "not_detected",
            },
            Err(_) => "error",
        };
        metrics.requests.with_label_values(&[outcome]).inc();
        if let Ok(report) = &result {
            metrics.examine_seconds.observe(report.elapsed.as_secs_f64());
        }
        result
    }

    /// Refuses at once when `max_concurrent` detections are running.
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::overloaded("classifier", Duration::from_secs(1)).into())
    }

    /// Checks the size of request bytes.
    pub fn check_size(&self, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Err(Error::InvalidArgument("video is empty; send video file bytes or a storage uri".into()));
        }
        if bytes > self.max_video_bytes {
            return Err(Error::InvalidArgument(format!(
                "video is {bytes} bytes; this classifier accepts at most {}",
                self.max_video_bytes
            )));
        }
        Ok(())
    }

    /// Reads a stored video by URI.
    pub async fn fetch(&self, uri: &str) -> Result<Bytes, Error> {
        let key = self.storage.key_of(uri)?;
        let bytes = self.storage.get(&key).await?;
        self.check_size(bytes.len())?;
        Ok(bytes)
    }

    /// Examines one video file. Blocking (decode + FFTs + C2PA): call from a blocking thread.
    pub fn examine(&self, mp4: &[u8]) -> Result<Report, Error> {
        let start = Instant::now();
        self.check_size(mp4.len())?;
        let mut acc: Option<Accumulator> = None;
        let mut sampled: Vec<Vec<f32>> = Vec::new();
        let budget = self.budget;
        let info = decode_video_each(mp4, |info, rgb| {
            // Frames spread evenly over the whole video: the watermark's sign depends on relative time.
            let index = info.frames - 1;
            let stride = budget.stride(info.width, info.height, info.samples);
            if index % stride == 0 {
                let a = acc.get_or_insert_with(|| Accumulator::new(info.width, info.height, info.samples));
                a.push_at(index, rgb);
            }
            let passive_stride = info.samples.div_ceil(passive::FRAMES).max(1);
            if self.passive.is_some() && index % passive_stride == 0 && sampled.len() < passive::FRAMES {
                sampled.push(passive::prepare(rgb, info.width, info.height));
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .map_err(|e| Error::InvalidArgument(format!("video: {e}")))?;
        let watermark = match acc {
            Some(acc) => acc.finish().detect(&self.reference),
            None => Detection { z: 0.0, p_value: 1.0, scale: 1.0, shift: (0, 0), payload: None },
        };
        let c2pa = vidmesh_provenance::verify_mp4(mp4, &self.trust_anchors);
        let passive = match &self.passive {
            Some(p) if !sampled.is_empty() => {
                let s = p.score(&sampled)?;
                let view = PassiveView {
                    score: s.score,
                    threshold: p.spec.threshold,
                    false_positives: p.spec.heldout_false_positives,
                    real_videos: p.spec.heldout_real_videos,
                };
                Some((view, s.frames))
            }
            _ => None,
        };
        let (verdict, mut reasons) = combine(&watermark, &c2pa, passive.as_ref().map(|p| &p.0), self.thresholds);
        if info.damaged > 0 {
            reasons.push(format!(
                "{} packet(s) or frame(s) of the video stream are corrupt (skipped, or decoded with concealed errors); \
                 evidence comes from {} frame(s)",
                info.damaged, info.frames
            ));
        }
        Ok(Report {
            verdict,
            reasons,
            watermark_detected: watermark.p_value <= self.thresholds.generated,
            watermark,
            c2pa,
            passive,
            width: info.width,
            height: info.height,
            frames: info.frames,
            elapsed: start.elapsed(),
        })
    }
}
