//! Provenance on every output of the `vidmesh` binary: `generate` signs with the machine-local C2PA chain it
//! creates on first use (checked with the c2pa crate and with c2pa's own Python package, c2pa-python), `detect`
//! names the signer, one changed byte makes the manifest invalid, a remux drops it and the watermark still holds;
//! `vidmesh watermark` marks and signs a video made elsewhere (H.265 in Matroska here), payload included.
//!
//! c2pa-python comes from the venv test.sh makes (`VIDMESH_OPENAI_PYTHON`: tests/openai/requirements.txt).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use vidmesh_provenance::{Provenance, verify_mp4};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn vidmesh(cache: &Path, args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vidmesh"))
        .args(args)
        .env("VIDMESH_CACHE", cache)
        .env("VIDMESH_WATERMARK_KEY_HEX", KEY)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "vidmesh {args:?}: {stdout}");
    (out, stdout)
}

fn ffmpeg(args: &[&str]) {
    let ok = Command::new("ffmpeg").env("SVT_LOG", "1").args(["-v", "error", "-y"]).args(args).status().unwrap();
    assert!(ok.success(), "ffmpeg {args:?}");
}

/// What c2pa-python reads from `file`: (state, signer, assertion labels).
fn c2pa_python(file: &Path) -> serde_json::Value {
    let python = std::env::var("VIDMESH_OPENAI_PYTHON").unwrap_or_else(|_| {
        panic!(
            "set VIDMESH_OPENAI_PYTHON to a python with `pip install -r tests/openai/requirements.txt` (test.sh does)"
        )
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/c2pa/read_manifest.py");
    let out = Command::new(python).arg(script).arg(file).output().unwrap();
    assert!(out.status.success(), "read_manifest.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn generated_videos_are_signed_with_the_local_chain_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let video = dir.path().join("video.mp4");
    let v = video.to_str().unwrap();
    vidmesh(&cache, &["generate", "a small red circle moving left", "-o", v, "--seed", "3", "--steps", "4"]);
    let chain = cache.join("c2pa");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(chain.join("key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is private");
    }
    let anchor = std::fs::read(chain.join("ca.pem")).unwrap();
    let mp4 = std::fs::read(&video).unwrap();

    // The c2pa crate: valid, trusted under the local CA, signer named, vidmesh's claim inside.
    let Provenance::Trusted(signed) = verify_mp4(&mp4, &anchor) else { panic!("{:?}", verify_mp4(&mp4, &anchor)) };
    let signer = signed.signer.unwrap();
    assert!(signer.starts_with("vidmesh"), "{signer}");
    assert_eq!(signed.claim.unwrap().model, "vidmesh-tiny");
    assert!(matches!(verify_mp4(&mp4, b""), Provenance::Valid(_)), "without the anchor: valid, not trusted");

    // c2pa's own Python package reads the same manifest as valid.
    let py = c2pa_python(&video);
    assert!(matches!(py["state"].as_str(), Some("Valid" | "Trusted")), "{py}");
    assert!(py["assertions"].as_array().unwrap().iter().any(|a| a == "org.vidmesh.generation"), "{py}");
    assert!(py["signer"].as_str().unwrap().contains("vidmesh"), "{py}");

    // detect names the signer and trusts this machine's CA.
    let (_, out) = vidmesh(&cache, &["detect", v]);
    assert!(out.contains(": Generated"), "{out}");
    assert!(out.contains(&format!("signed by a trusted certificate ({signer})")), "{out}");

    // One changed byte in the media data: invalid, for both readers.
    let mut tampered = mp4.clone();
    let mdat = tampered.windows(4).rposition(|w| w == b"mdat").unwrap();
    tampered[mdat + 64] ^= 0x01;
    let t = dir.path().join("tampered.mp4");
    std::fs::write(&t, &tampered).unwrap();
    assert!(matches!(verify_mp4(&tampered, &anchor), Provenance::Invalid(_)));
    let (_, out) = vidmesh(&cache, &["detect", t.to_str().unwrap()]);
    assert!(out.contains("fails validation"), "{out}");
    let py = c2pa_python(&t);
    assert_eq!(py["state"], "Invalid", "{py}");

    // A remux (same frames, new file): the manifest is gone, and that is handled; the watermark still decides.
    let remuxed = dir.path().join("remuxed.mkv");
    ffmpeg(&["-i", v, "-c", "copy", remuxed.to_str().unwrap()]);
    let (_, out) = vidmesh(&cache, &["detect", remuxed.to_str().unwrap()]);
    assert!(out.contains("no C2PA manifest") && out.contains(": Generated"), "{out}");
}

#[test]
fn a_video_made_elsewhere_is_marked_signed_and_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let source = dir.path().join("elsewhere.mkv");
    let s = source.to_str().unwrap();
    // Natural-looking motion at an odd size, H.265 in Matroska.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=257x257:rate=10:duration=2",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv444p",
        s,
    ]);
    let marked = dir.path().join("marked.mp4");
    let m = marked.to_str().unwrap();
    let (_, out) = vidmesh(&cache, &["watermark", s, "-o", m, "--tag", "4660", "--generator", "9"]);
    assert!(out.contains("20 frames 256x256 at 10.000 fps") && out.contains("(hevc)"), "{out}");
    let psnr: f64 = out.split("watermark PSNR ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let luma: f64 = out.split("(luma ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(psnr >= 43.0 && luma >= 42.0, "the mark stays at or above 42 dB on luma: {out}");

    let (_, out) = vidmesh(&cache, &["detect", m]);
    assert!(out.contains(": Generated") && out.contains("trusted certificate"), "{out}");
    assert!(out.contains("payload: generator 9, job tag 1234"), "{out}");
    let v = vidmesh_video::decode_video(&std::fs::read(&marked).unwrap()).unwrap();
    assert_eq!((v.width, v.height, v.frames.len()), (256, 256, 20));

    // Re-encoded by someone else with libx264's defaults: still recognised, every frame examined.
    let again = dir.path().join("again.mp4");
    ffmpeg(&["-i", m, "-c:v", "libx264", again.to_str().unwrap()]);
    let (_, out) = vidmesh(&cache, &["detect", again.to_str().unwrap()]);
    assert!(out.contains(": Generated") && out.contains("20 frames") && out.contains("no C2PA manifest"), "{out}");

    // The unmarked source is not claimed; what is not a video is refused with a reason.
    let (_, out) = vidmesh(&cache, &["detect", s]);
    assert!(out.contains(": NotDetected"), "{out}");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a video ".repeat(100)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vidmesh"))
        .args(["watermark", text.to_str().unwrap(), "-o", m])
        .env("VIDMESH_CACHE", &cache)
        .env("VIDMESH_WATERMARK_KEY_HEX", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a video"), "{}", String::from_utf8_lossy(&out.stderr));
}
