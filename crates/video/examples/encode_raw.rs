//! Encodes raw RGB24 frames from stdin into an MP4 on stdout with vidmesh's own encoder (for watermark research:
//! the same first-generation file the decoder service writes).
//!
//! `encode_raw WIDTH HEIGHT FPS QP_LO QP_HI < frames.rgb > out.mp4`

use std::io::{Read as _, Write as _};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 5 {
        return Err("usage: encode_raw WIDTH HEIGHT FPS QP_LO QP_HI < frames.rgb > out.mp4".into());
    }
    let (w, h): (usize, usize) = (a[0].parse()?, a[1].parse()?);
    let fps: f64 = a[2].parse()?;
    let qp = (a[3].parse()?, a[4].parse()?);
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let frames = raw.chunks_exact(w * h * 3).map(<[u8]>::to_vec).collect();
    let video = vidmesh_video::Video { width: w, height: h, fps, frames };
    let opts = vidmesh_video::EncodeOptions { qp, ..Default::default() };
    std::io::stdout().write_all(&vidmesh_video::encode_mp4(&video, &opts)?)?;
    Ok(())
}
