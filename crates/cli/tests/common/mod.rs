//! The mesh as separate processes on loopback: each service is `vidmesh serve <service> <config.toml>` with ports
//! 0, and announces the addresses it bound on stderr; readiness is its grpc.health.v1 status.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn bundle() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny").display().to_string()
}

/// A running service process.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

impl Proc {
    /// Starts `vidmesh serve <service> <dir>/<service>.toml` with `toml` as its config and waits until its health
    /// says SERVING.
    pub async fn start(service: &str, dir: &Path, toml: &str) -> Self {
        let proc = Self::spawn(service, dir, toml).await;
        proc.wait_serving().await;
        proc
    }

    /// As [`Proc::start`] for a service whose gRPC port speaks TLS (`[server.tls]` in `toml`): its health is asked
    /// over TLS with `tls` (a client certificate the service accepts).
    pub async fn start_tls(service: &str, dir: &Path, toml: &str, tls: tonic::transport::ClientTlsConfig) -> Self {
        let proc = Self::spawn(service, dir, toml).await;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", proc.grpc)).unwrap();
        let serving = vidmesh_runtime::health::wait_serving_at(endpoint.tls_config(tls).unwrap(), "");
        tokio::time::timeout(Duration::from_secs(120), serving)
            .await
            .unwrap_or_else(|_| panic!("{} never became SERVING", proc.name))
            .unwrap_or_else(|e| panic!("{}: {e}", proc.name));
        proc
    }

    /// Starts `vidmesh serve <service> <dir>/<service>.toml` with `toml` as its config and returns once it
    /// announced its addresses (not yet SERVING).
    pub async fn spawn(service: &str, dir: &Path, toml: &str) -> Self {
        let file = dir.join(format!("{service}-{}.toml", uuid_ish()));
        std::fs::write(&file, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vidmesh"))
            .args(["serve", service, file.to_str().unwrap()])
            .env("VIDMESH_CACHE", dir.join("cache"))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let name = format!("vidmesh-{service}");
        let prefix = format!("{name} grpc=");
        // Reads the announcement, then keeps forwarding the child's log to ours.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(&prefix) {
                    let _ = tx.send(line.clone());
                }
                eprintln!("[{prefix}] {line}");
            }
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("{service} did not announce its addresses"));
        let fields: HashMap<&str, &str> = line.split_whitespace().skip(1).filter_map(|kv| kv.split_once('=')).collect();
        let parse = |k: &str| fields.get(k).and_then(|v| v.parse().ok());
        Self { name, child, grpc: parse("grpc").unwrap(), http: parse("http"), metrics: parse("metrics") }
    }

    async fn wait_serving(&self) {
        // "": the process's overall health, SERVING once its stages are.
        let serving = vidmesh_runtime::health::wait_serving(self.grpc, "");
        tokio::time::timeout(Duration::from_secs(120), serving)
            .await
            .unwrap_or_else(|_| panic!("{} never became SERVING", self.name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().success()
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing, like a hung node.
    pub fn stop(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    }

    /// SIGKILL: no drain, no cleanup.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Scrapes one sample value (first match of `name`) from the metrics endpoint.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.metrics?);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with(name) && !l.starts_with('#'))?.rsplit(' ').next()?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `[server]` on loopback ports 0 and `[telemetry]` to `otlp` (if any).
pub fn common_toml(otlp: Option<SocketAddr>, grace: u64) -> String {
    let mut t =
        format!("[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndrain_grace_secs = {grace}\n\n");
    if let Some(a) = otlp {
        t.push_str(&format!("[telemetry]\notlp_endpoint = \"http://{a}\"\n\n"));
    }
    t
}

/// The config of stage `service` (text-encoder, denoiser, decoder, classifier) on a loopback port 0, with local
/// storage under `root` (decoder, classifier) and the test watermark key.
pub fn stage_toml(service: &str, root: &Path, otlp: Option<SocketAddr>) -> String {
    let base = common_toml(otlp, 10);
    let model = format!("[model]\nbundle = \"{}\"\n\n", bundle());
    let storage = format!("[storage]\nlocal_root = \"{}\"\n\n", root.display());
    let key = format!("[watermark]\nkey_hex = \"{KEY}\"\n\n");
    match service {
        "text-encoder" => format!("{base}{model}"),
        "denoiser" => format!("max_steps = 1000\n{base}{model}"),
        _ => format!("{base}{model}{storage}{key}"),
    }
}

/// The four stages as processes sharing local storage under `root`.
pub struct Stages(pub Vec<Proc>);

impl Stages {
    pub async fn start(dir: &Path, root: &Path, otlp: Option<SocketAddr>) -> Self {
        let [te, dn, dc, cl] =
            ["text-encoder", "denoiser", "decoder", "classifier"].map(|service| stage_toml(service, root, otlp));
        let (a, b, c, d) = tokio::join!(
            Proc::start("text-encoder", dir, &te),
            Proc::start("denoiser", dir, &dn),
            Proc::start("decoder", dir, &dc),
            Proc::start("classifier", dir, &cl),
        );
        Self(vec![a, b, c, d])
    }

    /// A gateway config for these stages.
    pub fn gateway_toml(&self, root: &Path, store_url: &str, otlp: Option<SocketAddr>, grace: u64) -> String {
        let mut t = format!("{}[http]\nlisten = \"127.0.0.1:0\"\n\n", common_toml(otlp, grace));
        t.push_str(&format!("[model]\nbundle = \"{}\"\n\n", bundle()));
        t.push_str(&format!("[storage]\nlocal_root = \"{}\"\n\n", root.display()));
        t.push_str(&format!("[store]\nurl = \"{store_url}\"\npoll_ms = 200\nlease_secs = 3\n\n"));
        t.push_str("[limits]\nmax_steps = 1000\n\n");
        for (i, name) in ["text_encoder", "denoiser", "decoder", "classifier"].iter().enumerate() {
            t.push_str(&format!("[stages.{name}]\nendpoints = [\"http://{}\"]\n\n", self.0[i].grpc));
        }
        t
    }

    pub fn denoiser(&self) -> &Proc {
        &self.0[1]
    }
}

/// A scratch PostgreSQL database for a test (`VIDMESH_TEST_POSTGRES` names the server's admin URL; the local
/// trust-auth server by default), dropped with the value.
pub struct PgDb {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

impl PgDb {
    pub fn create(tag: &str) -> Self {
        let admin = std::env::var("VIDMESH_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("vidmesh_{tag}_{}", std::process::id());
        let db = Self { url: format!("{}/{name}", admin.rsplit_once('/').unwrap().0), admin, name };
        db.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn psql(&self, sql: &str) {
        let out = Command::new("psql").args([self.admin.as_str(), "-qc", sql]).output().unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([self.admin.as_str(), "-qc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// `config` with its `listen = "127.0.0.1:0"` (the gRPC port) replaced by `addr`: a replacement process on a
/// given address.
pub fn listening_at(config: &str, addr: SocketAddr) -> String {
    config.replacen("listen = \"127.0.0.1:0\"\nmetrics_listen", &format!("listen = \"{addr}\"\nmetrics_listen"), 1)
}

/// A loopback address nothing listens on (yet).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Resident set size of a process, in MiB (from /proc).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

impl Proc {
    /// Resident set size (VmRSS in /proc/<pid>/status), in KiB; 0 once the process is gone.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap_or("0 kB");
        line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
    }

    /// Whether the process still runs (neither exited nor a zombie awaiting its exit status).
    pub fn alive(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some(s) if s != "Z" && s != "X")
    }
}
