//! The passive detector: the bundle's frame CNN, run on a few evenly spaced frames of the suspect.
//!
//! Invariants: frames are prepared exactly as in training (models/vidmesh_tiny/passive.py): RGB scaled to [0, 1],
//! resized bilinearly so the short side is 64, centre 64×64 crop, NCHW; the video's score is the mean logit. What
//! the score may claim is bounded by the rates measured when the threshold was set (the bundle's `[passive]`).

use std::sync::Mutex;

use ort::session::Session;
use vidmesh_model::PassiveSpec;

use crate::error::Error;

/// Side of the square the CNN sees.
pub const SIDE: usize = 64;
/// Frames sampled per video.
pub const FRAMES: usize = 8;

/// The loaded model and its calibration.
pub struct Passive {
    session: Mutex<Session>,
    /// The bundle's `[passive]` table.
    pub spec: PassiveSpec,
}

/// The passive score of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Mean logit.
    pub score: f64,
    /// Frames scored.
    pub frames: usize,
}

/// One frame prepared for the CNN: `[3, 64, 64]` planes of RGB in [0, 1].
pub fn prepare(rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
    let scale = SIDE as f64 / w.min(h) as f64;
    let (nw, nh) = (((w as f64 * scale).round() as usize).max(SIDE), ((h as f64 * scale).round() as usize).max(SIDE));
    let (x0, y0) = ((nw - SIDE) / 2, (nh - SIDE) / 2);
    let mut out = vec![0.0f32; 3 * SIDE * SIDE];
    for j in 0..SIDE {
        let fy = ((y0 + j) as f64 + 0.5) / scale - 0.5;
        let fy = fy.clamp(0.0, (h - 1) as f64);
        let (ya, ay) = (fy.floor() as usize, fy - fy.floor());
        let yb = (ya + 1).min(h - 1);
        for i in 0..SIDE {
            let fx = (((x0 + i) as f64 + 0.5) / scale - 0.5).clamp(0.0, (w - 1) as f64);
            let (xa, ax) = (fx.floor() as usize, fx - fx.floor());
            let xb = (xa + 1).min(w - 1);
            for c in 0..3 {
                let p = |x: usize, y: usize| f64::from(rgb[(y * w + x) * 3 + c]);
                let v = (1.0 - ay) * ((1.0 - ax) * p(xa, ya) + ax * p(xb, ya))
                    + ay * ((1.0 - ax) * p(xa, yb) + ax * p(xb, yb));
                out[c * SIDE * SIDE + j * SIDE + i] = (v / 255.0) as f32;
            }
        }
    }
    out
}

impl Passive {
    /// Wraps an opened session.
    pub fn new(session: Session, spec: PassiveSpec) -> Self {
        Self { session: Mutex::new(session), spec }
    }

    /// Scores prepared frames (each from [`prepare`]). Blocking.
    pub fn score(&self, frames: &[Vec<f32>]) -> Result<Score, Error> {
        if frames.is_empty() {
            return Ok(Score { score: f64::NEG_INFINITY, frames: 0 });
        }
        let data: Vec<f32> = frames.concat();
        let input = ort::value::Tensor::from_array(([frames.len(), 3, SIDE, SIDE], data))
            .map_err(|e| Error::Internal(format!("passive input: {e}")))?;
        let mut session = self.session.lock().map_err(|_| Error::Internal("passive session poisoned".into()))?;
        let outputs =
            session.run(ort::inputs!["frames" => input]).map_err(|e| Error::Internal(format!("passive: {e}")))?;
        let (_, logits) =
            outputs["logit"].try_extract_tensor::<f32>().map_err(|e| Error::Internal(format!("passive: {e}")))?;
        let score = logits.iter().map(|&v| f64::from(v)).sum::<f64>() / logits.len().max(1) as f64;
        Ok(Score { score, frames: frames.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_scaled_to_the_short_side_and_centre_cropped() {
        // 128x96 with a vertical gradient in R: after scaling by 2/3 and cropping, R still spans the rows evenly.
        let (w, h) = (128, 96);
        let rgb: Vec<u8> = (0..w * h).flat_map(|k| [((k / w) * 255 / (h - 1)) as u8, 10, 250]).collect();
        let f = prepare(&rgb, w, h);
        assert_eq!(f.len(), 3 * SIDE * SIDE);
        assert!(f[0] < 0.02 && f[SIDE * SIDE - 1] > 0.98, "{} {}", f[0], f[SIDE * SIDE - 1]);
        assert!((f[SIDE * SIDE] - 10.0 / 255.0).abs() < 1e-6);
        assert!((f[2 * SIDE * SIDE + 5] - 250.0 / 255.0).abs() < 1e-6);
    }
}
