//! Test clips shared by the video crate's tests.
#![allow(dead_code)]

use vidmesh_video::Video;

/// A red square (`2·half − 1` pixels wide) moving right by `speed` pixels a frame over a gradient: smooth areas and
/// sharp edges, like the bundled model's videos, and every frame different.
pub fn moving_square(width: usize, height: usize, frames: usize, fps: f64, speed: usize, half: usize) -> Video {
    let frames = (0..frames)
        .map(|t| {
            let mut f = vec![0u8; width * height * 3];
            for y in 0..height {
                for x in 0..width {
                    let i = (y * width + x) * 3;
                    f[i] = (x * 255 / width) as u8;
                    f[i + 1] = (y * 255 / height) as u8;
                    f[i + 2] = 96;
                    let (cx, cy) = (8 + speed * t, height / 2);
                    if x.abs_diff(cx) < half && y.abs_diff(cy) < half {
                        f[i..i + 3].copy_from_slice(&[230, 40, 40]);
                    }
                }
            }
            f
        })
        .collect();
    Video { width, height, fps, frames }
}
