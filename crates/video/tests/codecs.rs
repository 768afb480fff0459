//! Files made by the ffmpeg command (Debian's, with libx264, libx265, libvpx and SVT-AV1) from one of our MP4s are
//! decoded frame for frame: H.264 High with B-frames, H.265, VP9 and AV1, in MP4, MOV, MKV and WebM, an odd size
//! and a variable frame rate. Every frame comes back, in order, close to the original.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use vidmesh_video::media::{self, MediaKind};
use vidmesh_video::{EncodeOptions, Video, VideoError, decode_video, decode_video_each, encode_mp4, luma_psnr};

mod common;

/// A square moving over a gradient, 16 frames at 8 fps; each frame differs, so order mistakes show.
fn synthetic(width: usize, height: usize) -> Video {
    common::moving_square(width, height, 16, 8.0, 6, 9)
}

/// Runs ffmpeg on `input` with `args`, writing `out` (its extension picks the container); returns the bytes.
fn ffmpeg(dir: &Path, input: &Path, args: &[&str], out: &str) -> Vec<u8> {
    let path = dir.join(out);
    let status = Command::new("ffmpeg")
        .env("SVT_LOG", "1")
        .args(["-v", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg (Debian's ffmpeg package) must be on PATH");
    assert!(status.success(), "ffmpeg {args:?} → {out} failed");
    std::fs::read(path).unwrap()
}

fn ffprobe_frames(bytes: &[u8], dir: &Path) -> (String, usize) {
    let path = dir.join("probe.bin");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries"])
        .args(["stream=codec_name,profile,has_b_frames,nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let frames = text.trim().rsplit(',').next().unwrap().parse().unwrap();
    (text.trim().to_string(), frames)
}

#[test]
fn every_frame_of_common_codecs_and_containers_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let original = synthetic(128, 96);
    let source = dir.path().join("ours.mp4");
    std::fs::write(&source, encode_mp4(&original, &EncodeOptions { qp: (12, 16), ..Default::default() }).unwrap())
        .unwrap();
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("libx264 defaults (High, B-frames)", &["-c:v", "libx264"], "x264.mp4", "h264"),
        ("libx264 in MOV", &["-c:v", "libx264", "-bf", "3"], "x264.mov", "h264"),
        ("libx265 CRF 28", &["-c:v", "libx265", "-crf", "28", "-x265-params", "log-level=error"], "x265.mp4", "hevc"),
        ("libx265 in MKV", &["-c:v", "libx265", "-x265-params", "log-level=error"], "x265.mkv", "hevc"),
        ("VP9 in WebM", &["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0"], "vp9.webm", "vp9"),
        ("AV1 (SVT-AV1) in MP4", &["-c:v", "libsvtav1", "-crf", "24"], "av1.mp4", "av1"),
        ("AV1 (SVT-AV1) in MKV", &["-c:v", "libsvtav1"], "av1.mkv", "av1"),
    ];
    for (what, args, out, codec) in cases {
        let bytes = ffmpeg(dir.path(), &source, args, out);
        let (probe, frames) = ffprobe_frames(&bytes, dir.path());
        assert_eq!(frames, 16, "{what}: ffprobe {probe}");
        let decoded = decode_video(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((decoded.width, decoded.height, decoded.frames.len()), (128, 96, 16), "{what}");
        assert!((decoded.fps - 8.0).abs() < 1e-6, "{what}: fps {}", decoded.fps);
        let info = decode_video_each(&bytes, |_, _| Ok(std::ops::ControlFlow::Continue(()))).unwrap();
        assert_eq!((info.damaged, info.samples, info.codec.as_str()), (0, 16, *codec), "{what}: {info:?}");
        // In order and close to the original: each frame matches its own original best.
        // In order: frame t matches original t better, on average, than original t ± 1 (an offset or a swap).
        let aligned = |shift: isize| {
            let pairs: Vec<f64> = (0..16isize)
                .filter_map(|t| {
                    let u = usize::try_from(t + shift).ok().filter(|u| *u < 16)?;
                    Some(luma_psnr(&original.frames[u], &decoded.frames[t as usize]))
                })
                .collect();
            pairs.iter().sum::<f64>() / pairs.len() as f64
        };
        let (own, early, late) = (aligned(0), aligned(-1), aligned(1));
        assert!(own > 30.0 && own > early + 1.0 && own > late + 1.0, "{what}: {own:.1} vs {early:.1}/{late:.1} dB");
        assert_eq!(media::probe(&bytes).unwrap().kind, MediaKind::Video, "{what}");
        println!("{what}: {probe}: 16 of 16 frames");
    }
}

#[test]
fn odd_sizes_and_variable_frame_rates_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ours.mp4");
    std::fs::write(&source, encode_mp4(&synthetic(128, 96), &EncodeOptions::default()).unwrap()).unwrap();
    // 4:4:4 H.264 carries an odd size exactly; VP9 4:2:0 does too.
    let odd =
        ffmpeg(dir.path(), &source, &["-vf", "scale=101:75", "-c:v", "libx264", "-pix_fmt", "yuv444p"], "odd.mp4");
    let v = decode_video(&odd).unwrap();
    assert_eq!((v.width, v.height, v.frames.len()), (101, 75, 16));
    let odd = ffmpeg(dir.path(), &source, &["-vf", "scale=99:71", "-c:v", "libvpx-vp9"], "odd.webm");
    let v = decode_video(&odd).unwrap();
    assert_eq!((v.width, v.height, v.frames.len()), (99, 71, 16));
    // Irregular timestamps (a variable frame rate): every frame, the average rate reported.
    let vfr = ffmpeg(
        dir.path(),
        &source,
        &["-vf", "setpts='N/8/TB+if(gt(N,8),0.3/TB,0)'", "-fps_mode", "vfr", "-c:v", "libx264"],
        "vfr.mkv",
    );
    let v = decode_video(&vfr).unwrap();
    assert_eq!(v.frames.len(), 16);
    assert!(v.fps > 0.0, "{}", v.fps);
}

#[test]
fn what_is_not_video_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ours.mp4");
    let mp4 = encode_mp4(&synthetic(128, 96), &EncodeOptions::default()).unwrap();
    std::fs::write(&source, &mp4).unwrap();
    let webm = ffmpeg(dir.path(), &source, &["-c:v", "libvpx-vp9"], "v.webm");
    let audio = {
        let path = dir.path().join("tone.m4a");
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::fs::read(path).unwrap()
    };
    let ts = ffmpeg(dir.path(), &source, &["-c:v", "libx264", "-f", "mpegts"], "v.ts");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text", b"this is a text file, not a video ".repeat(40), "not a video file"),
        ("empty", vec![], "empty"),
        ("random bytes", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), "not a video"),
        ("an MP4 cut in half", mp4[..mp4.len() / 2].to_vec(), "truncated"),
        ("a WebM cut in half", webm[..webm.len() / 2].to_vec(), ""),
        ("audio only", audio, "no video stream"),
        ("MPEG-TS (not an accepted container)", ts, "not a video file"),
    ];
    for (what, bytes, text) in cases {
        let err = match decode_video(&bytes) {
            Err(e) => e,
            // A WebM cut short still holds whole clusters; what it holds must then be fewer frames.
            Ok(v) if what.contains("WebM") => {
                assert!(v.frames.len() < 16, "{what}: {} frames", v.frames.len());
                continue;
            }
            Ok(v) => panic!("{what}: decoded {} frames", v.frames.len()),
        };
        assert!(matches!(err, VideoError::Unreadable(_)), "{what}: {err}");
        assert!(err.to_string().contains(text), "{what}: {err}");
        assert!(media::probe(&bytes).is_err(), "{what}");
    }
}
