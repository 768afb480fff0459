//! S3 storage against a real S3 server: Garage, started here as a separate process on free loopback ports with a
//! fresh single-node layout, bucket and key. The binary comes from GARAGE_BIN, ~/.cache/vidmesh/garage/bin/garage
//! (scripts/install-garage.sh, run by .ci/run) or PATH.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::process::{Child, Command};
use vidmesh_storage::{S3Config, S3Storage, Storage, StorageError, sha256_hex};

fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/vidmesh/garage/bin/garage");
    if cached.exists() { cached } else { "garage".into() }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Garage {
    _dir: tempfile::TempDir,
    _server: Child,
    config: S3Config,
}

async fn garage(cfg: &std::path::Path, args: &[&str]) -> String {
    let out =
        Command::new(garage_bin()).arg("-c").arg(cfg).args(args).output().await.unwrap_or_else(|e| {
            panic!("cannot run {}: {e} (scripts/install-garage.sh builds it)", garage_bin().display())
        });
    assert!(out.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn start_garage() -> Garage {
    let dir = tempfile::tempdir().unwrap();
    let (rpc, s3, admin) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("garage.toml");
    let secret: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) % 256)).collect();
    std::fs::write(
        &cfg,
        format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let server = Command::new(garage_bin())
        .arg("-c")
        .arg(&cfg)
        .arg("server")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {}: {e} (scripts/install-garage.sh builds it)", garage_bin().display())
        });
    // Wait for the node to answer (a readiness poll on the real condition, bounded).
    let node = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let out = Command::new(garage_bin()).arg("-c").arg(&cfg).arg("status").output().await.unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success()
                && let Some(line) = text.lines().skip_while(|l| !l.contains("HEALTHY NODES")).nth(2)
                && let Some(id) = line.split_whitespace().next()
            {
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("garage became healthy");
    garage(&cfg, &["layout", "assign", "-z", "dc1", "-c", "1G", &node]).await;
    garage(&cfg, &["layout", "apply", "--version", "1"]).await;
    garage(&cfg, &["bucket", "create", "videos"]).await;
    let key = garage(&cfg, &["key", "create", "vidmesh-test"]).await;
    let field = |name: &str| {
        key.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).unwrap().trim().to_string()
    };
    let (id, secret_key) = (field("Key ID"), field("Secret key"));
    garage(&cfg, &["bucket", "allow", "--read", "--write", "--owner", "videos", "--key", "vidmesh-test"]).await;
    let config = S3Config {
        bucket: "videos".into(),
        region: "garage".into(),
        endpoint: format!("http://127.0.0.1:{s3}"),
        force_path_style: true,
        access_key_id: id,
        secret_access_key: secret_key,
        prefix: "test/".into(),
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
    };
    Garage { _dir: dir, _server: server, config }
}

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
