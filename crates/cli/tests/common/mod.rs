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
        let proc = Self { name, child, grpc: parse("grpc").unwrap(), http: parse("http"), metrics: parse("metrics") };
        proc.wait_serving().await;
        proc
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

/// The four stages as processes sharing local storage under `root`.
pub struct Stages(pub Vec<Proc>);

impl Stages {
    pub async fn start(dir: &Path, root: &Path, otlp: Option<SocketAddr>) -> Self {
        let base = common_toml(otlp, 10);
        let model = format!("[model]\nbundle = \"{}\"\n\n", bundle());
        let storage = format!("[storage]\nlocal_root = \"{}\"\n\n", root.display());
        let key = format!("[watermark]\nkey_hex = \"{KEY}\"\n\n");
        let te = format!("{base}{model}");
        let dn = format!("max_steps = 1000\n{base}{model}");
        let dc = format!("{base}{model}{storage}{key}");
        let cl = format!("{base}{model}{storage}{key}");
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
