//! Bundles from `s3://`: downloaded from a real Garage server into a cache, sha256-checked, reused, and refused when
//! an object in the bucket does not match the manifest.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use bytes::Bytes;
use vidmesh_model::{ModelConfig, Part, parse_s3_uri};
use vidmesh_storage::{S3Config, S3Storage, Storage};
use vidmesh_testkit::start_garage;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny")
}

#[test]
fn uris_parse() {
    assert_eq!(parse_s3_uri("s3://b/models/tiny/"), Some(("b".into(), "models/tiny/".into())));
    assert_eq!(parse_s3_uri("s3://b"), Some(("b".into(), String::new())));
    assert_eq!(parse_s3_uri("s3:///x"), None);
    assert_eq!(parse_s3_uri("/local/dir"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bundle_is_fetched_verified_and_cached() {
    let g = start_garage().await;
    let upload = S3Storage::new(S3Config { prefix: "bundles/tiny/".into(), ..g.config.clone() }).await.unwrap();
    for f in ["model.toml", "dit.onnx", "dit_head.onnx", "dit_tail.onnx", "dit_out.onnx", "vae_decoder.onnx"] {
        let bytes = std::fs::read(tiny().join(f)).unwrap();
        upload.put(f, Bytes::from(bytes), "application/octet-stream").await.unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let config = ModelConfig {
        bundle: "s3://videos/bundles/tiny".into(),
        cache_dir: cache.path().display().to_string(),
        s3: g.config.clone(),
        ..Default::default()
    };
    // `open` blocks; it runs its download on a thread of its own, so calling it from async code is fine.
    let b = config.open(&[Part::Dit, Part::VaeDecoder]).unwrap();
    assert_eq!(b.manifest.model.name, "vidmesh-tiny");
    assert!(b.path("dit.onnx").exists() && !b.path("text_encoder.onnx").exists(), "only the parts asked for");
    let mtime = std::fs::metadata(b.path("dit.onnx")).unwrap().modified().unwrap();
    config.open(&[Part::Dit]).unwrap();
    assert_eq!(std::fs::metadata(b.path("dit.onnx")).unwrap().modified().unwrap(), mtime, "cached file reused");

    // A corrupted object in the bucket is refused with the URI named.
    upload.put("vae_decoder.onnx", Bytes::from_static(b"not the model"), "application/octet-stream").await.unwrap();
    std::fs::remove_file(b.path("vae_decoder.onnx")).unwrap();
    let err = config.open(&[Part::VaeDecoder]).unwrap_err().to_string();
    assert!(err.contains("s3://videos/bundles/tiny/vae_decoder.onnx") && err.contains("sha256"), "{err}");
    let missing = ModelConfig { bundle: "s3://videos/nothing-here".into(), ..config.clone() };
    assert!(missing.open(&[Part::Dit]).unwrap_err().to_string().contains("nothing-here"));
}

/// A graph with ONNX external data: both files fetched (streamed to disk, hashed on the way), and the graph opens
/// from the cache with its weights beside it; a missing data object is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_data_is_fetched_with_its_graph() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/external-data");
    let g = start_garage().await;
    let upload = S3Storage::new(S3Config { prefix: "bundles/ext/".into(), ..g.config.clone() }).await.unwrap();
    for f in ["model.toml", "dit.onnx", "dit.onnx.data"] {
        upload.put(f, Bytes::from(std::fs::read(src.join(f)).unwrap()), "application/octet-stream").await.unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let config = ModelConfig {
        bundle: "s3://videos/bundles/ext".into(),
        cache_dir: cache.path().display().to_string(),
        s3: g.config.clone(),
        ..Default::default()
    };
    let b = config.open(&[Part::Dit]).unwrap();
    assert_eq!(std::fs::read(b.path("dit.onnx.data")).unwrap(), std::fs::read(src.join("dit.onnx.data")).unwrap());
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let onnx = vidmesh_model::Onnx::init(&vidmesh_model::OnnxConfig::default(), &env).unwrap();
    onnx.checked_session(&b, "dit", &b.manifest.dit.component).unwrap();

    upload.delete("dit.onnx.data").await.unwrap();
    std::fs::remove_file(b.path("dit.onnx.data")).unwrap();
    let err = config.open(&[Part::Dit]).unwrap_err().to_string();
    assert!(err.contains("dit.onnx.data"), "{err}");
}
