//! S3 storage against a real S3 server: Garage, started here as a separate process on free loopback ports with a
//! fresh single-node layout, bucket and key. The binary comes from GARAGE_BIN, ~/.cache/vidmesh/garage/bin/garage
//! (scripts/install-garage.sh, run by .ci/run) or PATH.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use vidmesh_storage::{S3Config, S3Storage, Storage, StorageError, sha256_hex};
use vidmesh_testkit::start_garage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_multipart_and_presigned_urls_against_garage() {
    let g = start_garage().await;
    let s = S3Storage::new(g.config.clone()).await.unwrap();

    let small = Bytes::from_static(b"a small object");
    let r = s.put("jobs/1/thumb.png", small.clone(), "image/png").await.unwrap();
    assert_eq!(r.uri, "s3://videos/test/jobs/1/thumb.png");
    assert_eq!((r.bytes, r.sha256.clone()), (14, sha256_hex(&small)));
    assert_eq!(s.get("jobs/1/thumb.png").await.unwrap(), small);
    assert_eq!(s.key_of(&r.uri).unwrap(), "jobs/1/thumb.png");

    // 12 MiB + 7 bytes: three parts of 5, 5 and 2 MiB.
    let big: Bytes = (0..(12 << 20) + 7).map(|i: usize| (i * 31 % 251) as u8).collect::<Vec<u8>>().into();
    let r = s.put("jobs/1/video.mp4", big.clone(), "video/mp4").await.unwrap();
    assert_eq!(r.bytes, big.len() as u64);
    let back = s.get("jobs/1/video.mp4").await.unwrap();
    assert_eq!(sha256_hex(&back), sha256_hex(&big), "multipart object reads back intact");

    let url = s.presigned_get("jobs/1/video.mp4", Duration::from_secs(300)).await.unwrap().unwrap();
    let resp = reqwest::get(&url).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(sha256_hex(&resp.bytes().await.unwrap()), r.sha256, "anyone with the URL can download it");
    let expired = s.presigned_get("jobs/1/video.mp4", Duration::from_secs(1)).await.unwrap().unwrap();
    let tampered = expired.replace("X-Amz-Expires=1", "X-Amz-Expires=9999");
    assert!(reqwest::get(&tampered).await.unwrap().status().is_client_error(), "the signature covers the expiry");

    s.delete("jobs/1/video.mp4").await.unwrap();
    assert!(matches!(s.get("jobs/1/video.mp4").await, Err(StorageError::NotFound(_))));
    assert!(matches!(s.get("../escape").await, Err(StorageError::InvalidKey(..))));
    assert!(s.key_of("s3://other-bucket/test/x").is_err());

    let wrong = S3Storage::new(S3Config { secret_access_key: "wrong".into(), ..g.config.clone() }).await.unwrap();
    let err = wrong.get("jobs/1/thumb.png").await.unwrap_err().to_string();
    assert!(!err.contains(&g.config.secret_access_key), "credentials never appear in errors");
}
