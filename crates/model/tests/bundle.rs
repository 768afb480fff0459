//! Opening the committed vidmesh-tiny bundle, and refusing broken or mismatched ones with named reasons.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vidmesh_model::{Bundle, ModelError, Onnx, OnnxConfig, Part};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny")
}

/// A copy of the bundle in a temp dir, with `edit` applied to model.toml.
fn copy_with(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    copy_of(&tiny(), edit)
}

/// A copy of the bundle at `src` in a temp dir, with `edit` applied to model.toml.
fn copy_of(src: &Path, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let m = dir.path().join("model.toml");
    std::fs::write(&m, edit(std::fs::read_to_string(&m).unwrap())).unwrap();
    dir
}

#[test]
fn the_committed_bundle_opens_and_verifies() {
    let b = Bundle::open(&tiny(), &[Part::TextEncoder, Part::Dit, Part::VaeEncoder, Part::VaeDecoder]).unwrap();
    let m = &b.manifest;
    assert_eq!(m.model.name, "vidmesh-tiny");
    assert_eq!(m.latent_shape(16, 64, 64), [8, 4, 16, 16]);
    assert_eq!(m.latent_shape(32, 64, 96), [8, 8, 16, 24]);
    b.expect_name("vidmesh-tiny").unwrap();
    let err = b.expect_name("sora").unwrap_err();
    assert!(matches!(err, ModelError::Mismatch(_)) && err.to_string().contains("\"sora\""), "{err}");
}

#[test]
fn a_tampered_file_is_named() {
    let dir = copy_with(|s| s);
    let dit = dir.path().join("dit.onnx");
    let mut bytes = std::fs::read(&dit).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&dit, bytes).unwrap();
    Bundle::open(dir.path(), &[Part::TextEncoder]).unwrap(); // only hashes what is asked for
    let err = Bundle::open(dir.path(), &[Part::Dit]).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("dit.onnx"), "{err}");
}

#[test]
fn inconsistent_manifests_are_refused_with_the_key() {
    let cases: [(&str, &str, &str); 5] = [
        ("frames = [8, 16, 32]", "frames = [8, 16, 30]", "video.frames 30"),
        ("default_frames = 16", "default_frames = 24", "default_frames"),
        ("kind = \"flow_match_euler\"", "kind = \"warp_drive\"", "scheduler.kind"),
        ("schema_version = 1", "schema_version = 3", "schema_version 3"),
        ("max_tokens = 48", "max_tokens = \"many\"", "max_tokens"),
    ];
    for (from, to, needle) in cases {
        let dir = copy_with(|s| s.replace(from, to));
        let err = Bundle::open(dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains(needle), "{from} -> {to}: {err}");
    }
    let err = Bundle::open(Path::new("/nonexistent"), &[]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.toml"), "{err}");
}

#[test]
fn a_missing_onnxruntime_library_says_how_to_get_it() {
    let Err(err) = Onnx::init(&OnnxConfig::default(), &HashMap::new()) else { panic!("no library configured") };
    assert!(err.to_string().contains("ORT_DYLIB_PATH") && err.to_string().contains("fetch-onnxruntime.sh"), "{err}");
    let cfg = OnnxConfig { dylib_path: "/nope/libonnxruntime.so".into(), ..Default::default() };
    let Err(err) = Onnx::init(&cfg, &HashMap::new()) else { panic!("missing file") };
    assert!(err.to_string().contains("/nope/libonnxruntime.so does not exist"), "{err}");
}

#[test]
fn sessions_open_on_the_cpu_provider() {
    let env: HashMap<String, String> = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).expect("ORT_DYLIB_PATH must point at libonnxruntime");
    let b = Bundle::open(&tiny(), &[Part::Dit]).unwrap();
    let s = onnx.session(&b.path(&b.manifest.dit.component.file)).unwrap();
    let names: Vec<&str> = s.inputs().iter().map(|i| i.name()).collect();
    for io in &b.manifest.dit.component.inputs {
        assert!(names.contains(&io.name.as_str()), "{} not in the graph", io.name);
    }
}

#[test]
fn cuda_requested_without_cuda_is_an_error_not_a_silent_cpu_fallback() {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = OnnxConfig { execution_provider: vidmesh_model::ExecutionProvider::Cuda, ..Default::default() };
    let onnx = Onnx::init(&cfg, &env).expect("ORT_DYLIB_PATH must point at libonnxruntime");
    let b = Bundle::open(&tiny(), &[Part::Dit]).unwrap();
    let Err(err) = onnx.session(&b.path(&b.manifest.dit.component.file)) else {
        panic!("the CPU-only library must refuse the CUDA provider")
    };
    assert!(err.to_string().contains("execution_provider = \"cuda\"") && err.to_string().contains("--gpu"), "{err}");
}

fn wan() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/wan2.1-tiny")
}

/// A copy of the Wan bundle with `edit` applied to model.toml.
fn wan_with(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    copy_of(&wan(), edit)
}

#[test]
fn a_format_2_bundle_opens_with_its_geometry() {
    let b = Bundle::open(&wan(), &[Part::TextEncoder, Part::Dit, Part::VaeDecoder]).unwrap();
    let m = &b.manifest;
    assert_eq!(m.schema_version, 2);
    // 4k+1 frames: the first frame is its own latent frame.
    assert_eq!(m.latent_shape(17, 48, 64), [16, 5, 6, 8]);
    assert_eq!(m.latent_shape(81, 480, 832), [16, 21, 60, 104]);
    assert_eq!(m.vae.frames_of(5), 17);
    m.check_frames(81).unwrap();
    let err = m.check_frames(16).unwrap_err();
    assert!(err.contains("1 + a multiple of 4"), "{err}");
    m.check_size(480, 832).unwrap();
    assert!(m.check_size(480, 830).unwrap_err().contains("830x480"));
    // diffusers' order: x / (1/std) + mean.
    let norm = m.vae.norm();
    assert_eq!(norm.div[0], 1.0 / 2.8184f32);
    assert_eq!(norm.mean[15], -0.2921f32);
}

#[test]
fn format_2_problems_are_named_at_start_up() {
    // Missing external data.
    let dir = wan_with(|s| {
        s.replacen(
            "[dit]\nfile = \"dit.onnx\"",
            "[dit]\nexternal_data = [{ file = \"dit.onnx.data\", sha256 = \"00\" }]\nfile = \"dit.onnx\"",
            1,
        )
    });
    let err = Bundle::open(dir.path(), &[Part::Dit]).unwrap_err();
    assert!(err.to_string().contains("dit.onnx.data"), "{err}");
    // Wrong sha256 of a format-2 part (the VAE's step graph).
    let dir =
        wan_with(|s| s.replace("e6c4a059f97098795d2b8b3868eb27df44c0a2f5c9a8a4c073e8016a8ea67bff", &"ab".repeat(32)));
    let err = Bundle::open(dir.path(), &[Part::VaeDecoder]).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }) && err.to_string().contains("vae_decoder_step.onnx"), "{err}");
    // A name the manifest maps but does not declare.
    let dir = wan_with(|s| s.replace("latents = \"hidden_states\"", "latents = \"x\""));
    let err = Bundle::open(dir.path(), &[]).unwrap_err();
    assert!(err.to_string().contains("dit.inputs lacks \"x\""), "{err}");
    // Frame counts that break the frame rule.
    let dir =
        wan_with(|s| s.replace("frames = { min = 5, max = 81, step = 4 }", "frames = { min = 4, max = 80, step = 4 }"));
    let err = Bundle::open(dir.path(), &[]).unwrap_err();
    assert!(err.to_string().contains("video.frames 4 is not 1 + a multiple of 4"), "{err}");
    // A stateful VAE without its step graph.
    let dir = wan_with(|s| s.replace("[vae.decoder_step]", "[unused_step]"));
    let err = Bundle::open(dir.path(), &[]).unwrap_err();
    assert!(err.to_string().contains("vae.decoder_step is missing"), "{err}");
}

#[test]
fn graphs_that_do_not_match_the_manifest_are_refused() {
    let env: HashMap<String, String> = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).expect("ORT_DYLIB_PATH must point at libonnxruntime");
    let b = Bundle::open(&wan(), &[Part::Dit, Part::VaeDecoder]).unwrap();
    onnx.checked_session(&b, "dit", &b.manifest.dit.component).unwrap();
    // The manifest renames an input consistently, but the graph does not have it.
    let dir = wan_with(|s| s.replace("\"hidden_states\"", "\"latents_in\""));
    let b = Bundle::open(dir.path(), &[Part::Dit]).unwrap();
    let err = onnx.checked_session(&b, "dit", &b.manifest.dit.component).unwrap_err().to_string();
    assert!(err.contains("\"latents_in\"") && err.contains("hidden_states"), "{err}");
    // The manifest calls the VAE's frame axis dynamic, but the graph fixes it (as a full-decode export does).
    let dir = wan_with(|s| {
        s.replacen(
            "{ name = \"latents\", dtype = \"float32\", shape = [1, 16, 1, \"latent_height\", \"latent_width\"] }",
            "{ name = \"latents\", dtype = \"float32\", shape = [1, 16, \"latent_frames\", \"latent_height\", \"latent_width\"] }",
            1,
        )
    });
    let b = Bundle::open(dir.path(), &[Part::VaeDecoder]).unwrap();
    let err = onnx.checked_session(&b, "vae.decoder", &b.manifest.vae.decoder).unwrap_err().to_string();
    assert!(err.contains("axis 2 (latent_frames) is fixed to 1"), "{err}");
}

#[test]
fn wan_prompts_are_cleaned_as_diffusers_does() {
    use vidmesh_model::PromptClean;
    // html.unescape twice, ftfy's straight quotes, whitespace collapsed and trimmed.
    assert_eq!(PromptClean::Wan.apply("  a &amp;amp; b\n\t\u{201C}c\u{201D} it\u{2019}s  "), "a & b \"c\" it's");
    assert_eq!(PromptClean::None.apply("  a  b "), "  a  b ");
    let b = Bundle::manifest_only(&wan()).unwrap();
    assert_eq!(b.manifest.text_encoder.prompt_clean, PromptClean::Wan);
}

#[test]
fn a_graph_with_external_data_opens_and_a_missing_data_file_is_named() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/external-data");
    let b = Bundle::open(&src, &[Part::Dit]).unwrap();
    assert_eq!(b.manifest.dit.component.external_data[0].file, "dit.onnx.data");
    let env: HashMap<String, String> = std::env::vars().collect();
    let onnx = Onnx::init(&OnnxConfig::default(), &env).unwrap();
    onnx.checked_session(&b, "dit", &b.manifest.dit.component).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.toml", "dit.onnx"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let err = Bundle::open(dir.path(), &[Part::Dit]).unwrap_err().to_string();
    assert!(err.contains("dit.onnx.data") && err.contains("No such file"), "{err}");
}
