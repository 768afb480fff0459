//! The `vidmesh` binary as a user runs it: generate an MP4 from a prompt with the bundled model, detect it, list
//! the model, and refuse a bad size with a message that lists the good ones.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs the binary with a fixed watermark key (outputs and scores are then deterministic) and a fresh cache;
/// ORT_DYLIB_PATH comes from the environment.
fn vidmesh(cache: &Path, key: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vidmesh"))
        .args(args)
        .env("VIDMESH_CACHE", cache)
        .env("VIDMESH_WATERMARK_KEY_HEX", key)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn generate_then_detect() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("video.mp4");
    let v = video.to_str().unwrap();
    let prompt = "a small red circle moving left slowly on a black background";
    let out = vidmesh(dir.path(), KEY, &["generate", prompt, "-o", v, "--seed", "42"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("16 frames 64x64 @ 8 fps, seed 42"), "{stdout}");
    let decoded = vidmesh_video::decode_mp4(&std::fs::read(&video).unwrap()).unwrap();
    assert_eq!((decoded.frames.len(), decoded.width, decoded.height), (16, 64, 64));

    let out = vidmesh(dir.path(), KEY, &["detect", v]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": Generated") && stdout.contains("vidmesh watermark detected"), "{stdout}");

    // Another machine's key does not see it.
    let other = "f".repeat(64);
    let stdout = String::from_utf8_lossy(&vidmesh(dir.path(), &other, &["detect", v]).stdout).to_string();
    assert!(stdout.contains("no vidmesh watermark found"), "{stdout}");
}

#[test]
fn longer_and_wider_videos_and_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("wide.mp4");
    let v = video.to_str().unwrap();
    let args = ["generate", "a blue square moving up", "-o", v, "--seconds", "4", "--size", "96x64", "--steps", "4"];
    assert!(vidmesh(dir.path(), KEY, &args).status.success());
    let decoded = vidmesh_video::decode_mp4(&std::fs::read(&video).unwrap()).unwrap();
    assert_eq!((decoded.frames.len(), decoded.width, decoded.height), (32, 96, 64));

    let out = vidmesh(dir.path(), KEY, &["generate", "x", "-o", v, "--size", "640x480"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("64x64"), "the error lists the supported sizes");
    let out = vidmesh(dir.path(), KEY, &["generate", "x", "-o", v, "--seconds", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("24 frames is not supported"));

    let out = vidmesh(dir.path(), KEY, &["models"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("vidmesh-tiny 0.3.0"));
}
