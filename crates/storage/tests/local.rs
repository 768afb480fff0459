//! Local storage: round trips, atomic replacement, keys that cannot escape the root.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use vidmesh_storage::{LocalStorage, Storage, StorageError, sha256_hex};

#[tokio::test]
async fn round_trip_replace_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path().join("root")).unwrap();
    let r = s.put("jobs/a/video.mp4", Bytes::from_static(b"first"), "video/mp4").await.unwrap();
    assert_eq!((r.bytes, r.sha256.as_str()), (5, sha256_hex(b"first").as_str()));
    assert!(r.uri.starts_with("file:///") && r.uri.ends_with("root/jobs/a/video.mp4"), "{}", r.uri);
    assert_eq!(s.key_of(&r.uri).unwrap(), "jobs/a/video.mp4");
    s.put("jobs/a/video.mp4", Bytes::from_static(b"second"), "video/mp4").await.unwrap();
    assert_eq!(s.get("jobs/a/video.mp4").await.unwrap(), Bytes::from_static(b"second"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("root/jobs/a")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    s.delete("jobs/a/video.mp4").await.unwrap();
    s.delete("jobs/a/video.mp4").await.unwrap();
    assert!(matches!(s.get("jobs/a/video.mp4").await, Err(StorageError::NotFound(_))));
    assert_eq!(s.presigned_get("x", std::time::Duration::from_secs(1)).await.unwrap(), None);
}

#[tokio::test]
async fn keys_cannot_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path().join("root")).unwrap();
    for key in ["../outside", "/etc/passwd", "a/../../outside", ""] {
        assert!(matches!(s.put(key, Bytes::new(), "x").await, Err(StorageError::InvalidKey(..))), "{key}");
        assert!(matches!(s.get(key).await, Err(StorageError::InvalidKey(..))), "{key}");
    }
    assert!(!dir.path().join("outside").exists());
    assert!(s.key_of("file:///etc/passwd").is_err());
    assert!(s.key_of("s3://bucket/key").is_err());
}
