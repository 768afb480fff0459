//! MP4 files checked by a real, independent reader (ffprobe from Debian's ffmpeg) and decoded back.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use vidmesh_video::{
    EncodeOptions, Video, VideoError, decode_video, encode_mp4, luma_psnr, psnr, spritesheet, thumbnail_jpeg,
    thumbnail_png,
};

mod common;

/// A coloured square moving over a gradient: smooth areas and sharp edges, like the bundled model's videos.
fn synthetic(width: usize, height: usize, frames: usize, fps: f64) -> Video {
    common::moving_square(width, height, frames, fps, 2, 7)
}

fn ffprobe(bytes: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe must be installed (Debian package ffmpeg; .ci/run installs it)");
    assert!(out.status.success(), "ffprobe rejected the file: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Top-level box types in file order.
fn boxes(bytes: &[u8]) -> Vec<String> {
    let mut at = 0;
    let mut out = vec![];
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

#[test]
fn ffprobe_accepts_the_mp4_and_frames_round_trip() {
    for (w, h, n) in [(64, 64, 16), (96, 64, 32), (64, 64, 8)] {
        let video = synthetic(w, h, n, 8.0);
        let mp4 = encode_mp4(&video, &EncodeOptions::default()).unwrap();
        let probe = ffprobe(&mp4);
        let s = &probe["streams"][0];
        assert_eq!(s["codec_name"], "h264");
        assert_eq!(s["pix_fmt"], "yuv420p");
        assert_eq!((s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()), (w as u64, h as u64));
        assert_eq!(s["nb_read_frames"].as_str().unwrap(), n.to_string());
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((duration - n as f64 / 8.0).abs() < 0.01, "duration {duration}");
        let order = boxes(&mp4);
        let (moov, mdat) = (order.iter().position(|b| b == "moov"), order.iter().position(|b| b == "mdat"));
        assert!(moov.unwrap() < mdat.unwrap(), "fast start: moov before mdat, got {order:?}");

        let back = decode_video(&mp4).unwrap();
        assert_eq!((back.width, back.height, back.frames.len()), (w, h, n));
        assert!((back.fps - 8.0).abs() < 1e-6, "fps {}", back.fps);
        let worst = |f: fn(&[u8], &[u8]) -> f64| {
            video.frames.iter().zip(&back.frames).map(|(a, b)| f(a, b)).fold(f64::INFINITY, f64::min)
        };
        let (luma, rgb) = (worst(luma_psnr), worst(psnr));
        println!("{w}x{h}x{n}: worst frame PSNR luma {luma:.1} dB, RGB {rgb:.1} dB, {} bytes", mp4.len());
        assert!(luma >= 40.0, "{w}x{h}x{n}: worst luma PSNR {luma:.1} dB at the default QP 12-18");
        assert!(rgb >= 25.0, "{w}x{h}x{n}: worst RGB PSNR {rgb:.1} dB (chroma is halved by yuv420p)");
    }
}

#[test]
fn higher_quantisers_give_smaller_files_and_lower_psnr() {
    let video = synthetic(64, 64, 16, 8.0);
    let fine = encode_mp4(&video, &EncodeOptions { qp: (10, 12), ..Default::default() }).unwrap();
    let coarse = encode_mp4(&video, &EncodeOptions { qp: (40, 44), ..Default::default() }).unwrap();
    assert!(coarse.len() < fine.len());
    let q = |mp4: &[u8]| {
        let back = decode_video(mp4).unwrap();
        video.frames.iter().zip(&back.frames).map(|(a, b)| luma_psnr(a, b)).sum::<f64>() / 16.0
    };
    let (qf, qc) = (q(&fine), q(&coarse));
    println!("QP 10-12: {} bytes, luma {qf:.1} dB; QP 40-44: {} bytes, luma {qc:.1} dB", fine.len(), coarse.len());
    assert!(qf > qc + 5.0, "{qf} vs {qc}");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let video = synthetic(64, 64, 8, 8.0);
    let mp4 = encode_mp4(&video, &EncodeOptions::default()).unwrap();
    for (what, bytes) in [
        ("truncated", mp4[..mp4.len() / 2].to_vec()),
        ("not a video", b"this is a text file, not an MP4".repeat(20)),
        ("empty", vec![]),
    ] {
        let err = decode_video(&bytes).unwrap_err();
        assert!(matches!(err, VideoError::Unreadable(_)), "{what}: {err}");
    }
    let odd = Video { width: 63, ..synthetic(64, 64, 2, 8.0) };
    assert!(encode_mp4(&odd, &EncodeOptions::default()).unwrap_err().to_string().contains("even"));
    let huge = Video { width: 100_000, height: 2, fps: 8.0, frames: vec![vec![]] };
    assert!(encode_mp4(&huge, &EncodeOptions::default()).unwrap_err().to_string().contains("outside"));
    let nan = Video { fps: f64::NAN, ..synthetic(64, 64, 2, 8.0) };
    assert!(encode_mp4(&nan, &EncodeOptions::default()).unwrap_err().to_string().contains("fps"));
    let empty = Video { frames: vec![], ..synthetic(64, 64, 1, 8.0) };
    assert!(encode_mp4(&empty, &EncodeOptions::default()).unwrap_err().to_string().contains("no frames"));
    let short = Video { frames: vec![vec![0; 10]], ..synthetic(64, 64, 1, 8.0) };
    assert!(encode_mp4(&short, &EncodeOptions::default()).unwrap_err().to_string().contains("frame 0 has 10 bytes"));
}

#[test]
fn thumbnails_and_spritesheets() {
    let video = synthetic(64, 64, 16, 8.0);
    let png = image::load_from_memory(&thumbnail_png(&video).unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
    assert_eq!(png.to_rgb8().into_raw(), video.frames[8], "PNG is lossless: the middle frame exactly");
    let jpeg = image::load_from_memory(&thumbnail_jpeg(&video).unwrap()).unwrap();
    assert_eq!((jpeg.width(), jpeg.height()), (64, 64));
    let sheet = image::load_from_memory(&spritesheet(&video, 4, 2).unwrap()).unwrap();
    assert_eq!((sheet.width(), sheet.height()), (256, 128));
    let few = image::load_from_memory(&spritesheet(&synthetic(64, 64, 3, 8.0), 4, 2).unwrap()).unwrap();
    assert_eq!((few.width(), few.height()), (192, 64), "three frames fill three cells of one row");
    assert!(spritesheet(&video, 0, 2).is_err());
}
