//! Test support: a real Garage S3 server (single node, fresh layout, one bucket and key) on free loopback ports.
//! The binary comes from GARAGE_BIN, ~/.cache/vidmesh/garage/bin/garage (scripts/install-garage.sh) or PATH.
//! Also: waiting for a served stage's health, a development C2PA PKI ([`DevPki`]), and a test CA for TLS between
//! the services ([`TestCa`]).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, clippy::expect_used)]

mod pki;
mod raw;
mod tls;

pub use pki::{DevPki, DevPkiFiles};
pub use raw::{Raw, RawCoder};
pub use tls::{TestCa, TlsFiles};

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use vidmesh_storage::S3Config;

/// The Garage binary to run.
pub fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/vidmesh/garage/bin/garage");
    if cached.exists() { cached } else { "garage".into() }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running Garage; stopped (killed) when dropped.
pub struct Garage {
    _dir: tempfile::TempDir,
    _server: Child,
    /// Client settings for the bucket `videos` (prefix `test/`).
    pub config: S3Config,
}

async fn garage(cfg: &std::path::Path, args: &[&str]) -> String {
    let out =
        Command::new(garage_bin()).arg("-c").arg(cfg).args(args).output().await.unwrap_or_else(|e| {
            panic!("cannot run {}: {e} (scripts/install-garage.sh builds it)", garage_bin().display())
        });
    assert!(out.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts Garage and creates the bucket `videos` with a read/write key.
pub async fn start_garage() -> Garage {
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

/// Connects to a stage served on `addr` and waits until its health reports SERVING for `service`; panics (rather
/// than hang) if `task` — the stage's serve future — ends first, e.g. because its model failed to load.
pub async fn connect_when_serving<E: std::fmt::Debug>(
    addr: std::net::SocketAddr,
    service: &str,
    task: &mut tokio::task::JoinHandle<Result<(), E>>,
) -> tonic::transport::Channel {
    tokio::select! {
        serving = vidmesh_runtime::health::wait_serving(addr, service) => serving.unwrap(),
        ended = task => panic!("{service} stopped before serving: {ended:?}"),
    }
}

/// A stage served in this process on 127.0.0.1:0 (see [`serve_gated`]).
pub struct Served {
    /// Its gRPC address.
    pub addr: std::net::SocketAddr,
    /// A channel to it.
    pub channel: tonic::transport::Channel,
    /// Its collectors.
    pub registry: prometheus::Registry,
    /// Starts its drain.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Ends when it has drained (or failed to start).
    pub task: tokio::task::JoinHandle<Result<(), vidmesh_runtime::StartError>>,
}

/// Serves `S` with `config` (the process environment, no metrics endpoint), its load waiting for `gate`; returns
/// at once, connected, health still NOT_SERVING until the gate opens and the load finishes.
pub async fn serve_gated<S: vidmesh_runtime::Stage>(
    config: S::Config,
    gate: impl std::future::Future<Output = ()> + Send + 'static,
) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (registry, shutdown) = (prometheus::Registry::new(), tokio_util::sync::CancellationToken::new());
    let opts = vidmesh_runtime::stage::Options {
        env: std::env::vars().collect(),
        registry: registry.clone(),
        metrics_listener: None,
        load_gate: gate,
        listeners: Default::default(),
    };
    let task = tokio::spawn(vidmesh_runtime::stage::serve_with::<S, _>(config, listener, shutdown.clone(), opts));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Served { addr, channel, registry, shutdown, task }
}

impl Served {
    /// Waits until its health reports SERVING for `service`; panics (rather than hang) if it stops first.
    pub async fn serving(&mut self, service: &str) {
        connect_when_serving(self.addr, service, &mut self.task).await;
    }
}
