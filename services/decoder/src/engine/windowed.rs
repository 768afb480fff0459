//! `vae.decode = "windowed"` (HunyuanVideo): diffusers' `AutoencoderKLHunyuanVideo._temporal_tiled_decode`.
//!
//! A video of T latent frames with T > `window − 1` is decoded in windows `[i, i + window)` for i = 0, stride,
//! 2·stride, … (each run whole, the last possibly shorter). Every window but the first drops its first decoded
//! frame, then its first `blend` frames are mixed linearly with the previous window's last `blend` frames
//! (`prev·(1 − x/blend) + cur·(x/blend)` for frame x, weights rounded to f32 as torch does with Python floats). The
//! first window contributes `stride·tc + 1` frames, each later one `stride·tc`; the video is cut to 1 + (T − 1)·tc.
//! Memory is one window's frames plus `blend` frames of the previous one.

/// One decoded frame, channel-major [3, H, W] in the VAE's [-1, 1] range.
pub type Frame = Vec<f32>;

/// The windowing of one video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Latent frames per window.
    pub window: usize,
    /// Latent frames between window starts.
    pub stride: usize,
    /// Video frames blended where two windows meet.
    pub blend: usize,
    /// Video frames per latent frame.
    pub temporal: usize,
}

impl Windows {
    /// Whether a video of `t` latent frames is windowed (else it decodes whole, as diffusers does).
    pub fn applies(&self, t: usize) -> bool {
        t > self.window - 1
    }

    /// The windows (start, latent frames) of a video of `t` latent frames.
    pub fn chunks(&self, t: usize) -> Vec<(usize, usize)> {
        if !self.applies(t) {
            return vec![(0, t)];
        }
        (0..t).step_by(self.stride).map(|i| (i, self.window.min(t - i))).collect()
    }
}

/// Blends windows as they are decoded; keeps the previous window's last `blend` frames.
#[derive(Debug)]
pub struct Blender {
    w: Windows,
    tail: Vec<Frame>,
    first: bool,
}

impl Blender {
    /// A blender for one video.
    pub fn new(w: Windows) -> Self {
        Self { w, tail: Vec::new(), first: true }
    }

    /// Takes the next window's decoded frames; returns the frames it completes, in order.
    pub fn push(&mut self, mut frames: Vec<Frame>) -> Vec<Frame> {
        let keep = self.w.stride * self.w.temporal;
        if self.first {
            self.first = false;
            self.tail = frames[frames.len().saturating_sub(self.w.blend)..].to_vec();
            frames.truncate(keep + 1);
            return frames;
        }
        frames.remove(0);
        let extent = self.w.blend;
        let prev = std::mem::take(&mut self.tail);
        // diffusers indexes the previous window from its end: a[-extent + x].
        for x in 0..extent.min(frames.len()).min(prev.len()) {
            let a = &prev[prev.len() - extent.min(prev.len()) + x];
            let r = x as f64 / extent as f64;
            let (wa, wb) = ((1.0 - r) as f32, r as f32);
            for (b, a) in frames[x].iter_mut().zip(a) {
                *b = a * wa + *b * wb;
            }
        }
        self.tail = frames[frames.len().saturating_sub(extent)..].to_vec();
        frames.truncate(keep);
        frames
    }
}

/// Splits a run's video [3, n, H, W] (channel-major) into n frames [3, H, W].
pub fn split(video: &[f32], n: usize, plane: usize) -> Vec<Frame> {
    (0..n)
        .map(|f| (0..3).flat_map(|c| video[(c * n + f) * plane..(c * n + f + 1) * plane].iter().copied()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_diffusers_tiling() {
        let w = Windows { window: 5, stride: 3, blend: 4, temporal: 4 };
        assert_eq!(w.chunks(4), vec![(0, 4)]);
        assert_eq!(w.chunks(5), vec![(0, 5), (3, 2)]);
        assert_eq!(w.chunks(7), vec![(0, 5), (3, 4), (6, 1)]);
        // 7 latent frames: windows of 17, 13 (−1) and 1 (−1) frames give 13 + 12 + 0 ≥ 25 = 1 + 6·4.
        let mut b = Blender::new(w);
        let mk = |n: usize, v: f32| (0..n).map(|i| vec![v + i as f32; 3]).collect::<Vec<_>>();
        let a = b.push(mk(17, 0.0));
        assert_eq!(a.len(), 13);
        let c = b.push(mk(13, 100.0));
        assert_eq!(c.len(), 12);
        // Frame 0 of the second window (after dropping its first) is all the previous window's frame 13.
        assert_eq!(c[0][0], 13.0);
        // Frame 2: half of each (x / blend = 0.5).
        assert_eq!(c[2][0], 15.0 * 0.5 + 103.0 * 0.5);
        assert_eq!(b.push(mk(1, 200.0)).len(), 0);
    }
}
