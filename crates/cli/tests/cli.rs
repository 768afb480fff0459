//! The `vidmesh` binary as a user runs it: generate an MP4 from a prompt with the bundled model, detect it, list
//! the model, and refuse a bad size with a message that lists the good ones; image→video, video→video and
//! extension from files.
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
    let decoded = vidmesh_video::decode_video(&std::fs::read(&video).unwrap()).unwrap();
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
    let decoded = vidmesh_video::decode_video(&std::fs::read(&video).unwrap()).unwrap();
    assert_eq!((decoded.frames.len(), decoded.width, decoded.height), (32, 96, 64));

    let out = vidmesh(dir.path(), KEY, &["generate", "x", "-o", v, "--size", "640x480"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("64x64"), "the error lists the supported sizes");
    let out = vidmesh(dir.path(), KEY, &["generate", "x", "-o", v, "--seconds", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use one of 1s, 2s, 4s"), "a duration is never rounded");

    let out = vidmesh(dir.path(), KEY, &["models"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("vidmesh-tiny 0.3.0"), "{stdout}");
    assert!(stdout.contains("step caching (--cache): off, balanced, fast"), "{stdout}");

    // Step caching from the CLI: a tier the bundle has, and one that does not exist.
    let fast = dir.path().join("fast.mp4");
    let args = ["generate", "a blue square moving up", "-o", fast.to_str().unwrap(), "--cache", "fast"];
    assert!(vidmesh(dir.path(), KEY, &args).status.success());
    assert_eq!(vidmesh_video::decode_video(&std::fs::read(&fast).unwrap()).unwrap().frames.len(), 16);
    let out = vidmesh(dir.path(), KEY, &["generate", "x", "-o", v, "--cache", "turbo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache \"turbo\" is unknown"), "the error names the tiers");
}

/// `--bundle` with an exported family, PNG frames out, `--frames` and `--no-watermark`: the frames are diffusers'
/// own WanPipeline output for the same prompt and seed (golden case 0) within one level.
#[test]
fn png_frames_of_an_exported_bundle_match_diffusers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = repo.join("models/fixtures/wan2.1-tiny");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][0];
    let dir = tempfile::tempdir().unwrap();
    let frames_dir = format!("{}/", dir.path().join("frames").display());
    let size = format!("{}x{}", case["width"], case["height"]);
    let (frames, steps, seed) = (case["frames"].to_string(), case["steps"].to_string(), case["seed"].as_str().unwrap());
    let bundle = repo.join("models/wan2.1-tiny");
    let args = [
        "--bundle",
        bundle.to_str().unwrap(),
        "generate",
        case["prompt"].as_str().unwrap(),
        "-o",
        &frames_dir,
        "--frames",
        &frames,
        "--size",
        &size,
        "--steps",
        &steps,
        "--seed",
        seed,
        "--guidance",
        "5",
        "--no-watermark",
    ];
    let out = vidmesh(dir.path(), KEY, &args);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wrote 9 PNG frames 64x48") && stdout.contains("not watermarked"), "{stdout}");
    let bytes = std::fs::read(fixtures.join("case0.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st
        .tensor("frames")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let per = 48 * 64 * 3;
    for i in 0..9 {
        let png = image::open(dir.path().join(format!("frames/frame_{i:04}.png"))).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (64, 48));
        let worst = png
            .as_raw()
            .iter()
            .zip(&want[i * per..(i + 1) * per])
            .map(|(&a, &b)| (f32::from(a) - b * 255.0).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1.0, "frame {i} differs from diffusers by {worst} levels");
    }
    // A frame count outside the 4k+1 rule is refused with the rule.
    let bad = ["--bundle", bundle.to_str().unwrap(), "generate", "x", "-o", &frames_dir, "--frames", "16"];
    let out = vidmesh(dir.path(), KEY, &bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 + a multiple of 4"));
}

/// `generate --image`, `generate --video --strength` and `extend`: each makes the frames its mode promises, and a
/// reference that is not media is refused by name.
#[test]
fn image_to_video_edit_and_extend_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let frames = |p: &str| vidmesh_video::decode_video(&std::fs::read(p).unwrap()).unwrap().frames.len();
    let rgb: Vec<u8> = (0..48 * 48).flat_map(|i| if (i % 48) < 24 { [220, 40, 40] } else { [12, 12, 12] }).collect();
    std::fs::write(path("first.png"), vidmesh_video::png_frame(48, 48, &rgb).unwrap()).unwrap();
    let prompt = "a small red square moving right slowly on a black background";
    let steps = ["--steps", "3", "--seed", "5"];
    let run = |args: &[&str]| vidmesh(dir.path(), KEY, &[args, &steps[..]].concat());

    assert!(run(&["generate", prompt, "-o", &path("i2v.mp4"), "--image", &path("first.png")]).status.success());
    assert_eq!(frames(&path("i2v.mp4")), 16);
    let edit = ["generate", "a blue square", "-o", &path("edit.mp4"), "--video", &path("i2v.mp4"), "--strength", "0.5"];
    assert!(run(&edit).status.success());
    assert_eq!(frames(&path("edit.mp4")), 16, "an edit keeps its source's length");
    let out = run(&["extend", &path("i2v.mp4"), prompt, "-o", &path("long.mp4"), "--seconds", "2"]);
    assert!(out.status.success());
    assert_eq!(frames(&path("long.mp4")), 32, "the stitched whole: 16 + 16");

    std::fs::write(path("junk.png"), b"not an image").unwrap();
    let out = run(&["generate", prompt, "-o", &path("x.mp4"), "--image", &path("junk.png")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither an image"));
    // A prompt of only control characters is refused before anything loads, as the gateway refuses it.
    let out = run(&["generate", "\u{1}\u{7}", "-o", &path("x.mp4")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the prompt"), "{}", String::from_utf8_lossy(&out.stderr));
}
