//! Which frames a detector examines: spread evenly over the whole video (the pattern's sign depends on relative
//! time), as many as a frame budget and a pixel budget allow — small videos are read in full, large ones by a
//! bounded number of pixels, so detection time stays bounded whatever the size and length.
//!
//! Invariants: at least one frame is examined; the examined frames are those whose index is a multiple of
//! [`Budget::stride`]; the classifier service and the evaluation (bench `watermark_eval`) use this one rule.

/// How much of a video a detector examines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most frames examined.
    pub max_frames: usize,
    /// Most pixels examined over all frames (frames × width × height).
    pub max_pixels: usize,
}

impl Default for Budget {
    /// 128 frames and 16 million pixels: all 120 frames of a 5-second 480×270 clip at 24 fps, 39 frames of an
    /// 854×480 one (under 1 s of detection on 2 cores).
    fn default() -> Self {
        Self { max_frames: 128, max_pixels: 16_000_000 }
    }
}

impl Budget {
    /// Frames to examine of a video of `total` frames of `width × height`.
    pub fn frames(&self, width: usize, height: usize, total: usize) -> usize {
        let by_pixels = self.max_pixels / (width * height).max(1);
        self.max_frames.min(by_pixels).min(total).max(1)
    }

    /// Every `stride`-th frame (from the first) is examined.
    pub fn stride(&self, width: usize, height: usize, total: usize) -> usize {
        total.div_ceil(self.frames(width, height, total)).max(1)
    }

    /// How many frames that is: at most [`Budget::frames`].
    pub fn examined(&self, width: usize, height: usize, total: usize) -> usize {
        total.div_ceil(self.stride(width, height, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_videos_are_read_in_full_and_large_ones_within_the_pixel_budget() {
        let b = Budget::default();
        assert_eq!((b.frames(480, 270, 120), b.stride(480, 270, 120)), (120, 1));
        assert_eq!(b.frames(854, 480, 120), 39);
        assert_eq!((b.stride(854, 480, 120), b.examined(854, 480, 120)), (4, 30));
        assert_eq!(b.examined(480, 270, 120), 120);
        assert_eq!(b.frames(64, 64, 16), 16);
        assert_eq!(b.frames(64, 64, 1000), 128);
        assert_eq!(b.frames(4096, 4096, 10), 1, "at least one frame");
        assert_eq!(b.stride(64, 64, 0), 1);
    }
}
