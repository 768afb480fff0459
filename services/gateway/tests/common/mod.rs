//! The mesh for gateway tests: the four stages as real gRPC servers on 127.0.0.1:0 (in this process, on the
//! bundled model), and gateways in front of them with their gRPC and HTTP listeners.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_runtime::stage::{Options, serve_with};
pub use vidmesh_testmesh::{Stages, bundle};

/// The four stages, sharing local storage under `root`.
pub async fn stages(root: &Path) -> Stages {
    Stages::start(&vidmesh_testmesh::Setup::new(root)).await.unwrap()
}

/// No stages at all (for tests of what is refused before any stage is called): every address refuses.
pub fn no_stages() -> Stages {
    let nowhere = "127.0.0.1:9".parse().unwrap();
    Stages { addrs: [nowhere; 4], denoiser_metrics: prometheus::Registry::new(), shutdown: CancellationToken::new() }
}

/// A SQLite job store under `dir`.
pub fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("jobs.db").display())
}

/// A gateway config pointing at `stages`, storing under `root`, jobs in `store_url`.
pub fn gateway_config(stages: &Stages, root: &Path, store_url: &str) -> vidmesh_gateway::Config {
    let mut c = vidmesh_gateway::Config::default();
    c.model.bundle = bundle();
    c.storage.local_root = root.display().to_string();
    c.store.url = store_url.into();
    c.store.poll_ms = 200;
    c.limits.max_steps = 1000;
    let ep = |a: SocketAddr| vec![format!("http://{a}")];
    c.stages.text_encoder.endpoints = ep(stages.addrs[0]);
    c.stages.denoiser.endpoints = ep(stages.addrs[1]);
    c.stages.decoder.endpoints = ep(stages.addrs[2]);
    c.stages.classifier.endpoints = ep(stages.addrs[3]);
    c
}

/// `config` with one tenant per name (API key `sk-<name>`) and no anonymous tenant: every call needs a key.
pub fn with_tenants(config: &mut vidmesh_gateway::Config, names: &[&str]) {
    config.admission.anonymous_tenant = String::new();
    config.admission.tenants = names
        .iter()
        .map(|n| vidmesh_gateway::config::TenantConfig {
            name: n.to_string(),
            key_sha256: vec![vidmesh_storage::sha256_hex(format!("sk-{n}").as_bytes())],
            ..Default::default()
        })
        .collect();
}

/// A running gateway.
pub struct Gateway {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub registry: prometheus::Registry,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), vidmesh_runtime::StartError>>,
}

impl Gateway {
    pub async fn start(config: vidmesh_gateway::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc, http_addr) = (listener.local_addr().unwrap(), http.local_addr().unwrap());
        let registry = prometheus::Registry::new();
        let mut opts = Options { registry: registry.clone(), ..Options::with_env(Default::default()) };
        opts.listeners.insert(vidmesh_gateway::HTTP_LISTEN, http);
        let shutdown = CancellationToken::new();
        let mut task =
            tokio::spawn(serve_with::<vidmesh_gateway::Gateway, _>(config, listener, shutdown.clone(), opts));
        vidmesh_testkit::connect_when_serving(grpc, vidmesh_gateway::SERVICE_NAME, &mut task).await;
        Self { grpc, http: http_addr, registry, shutdown, task }
    }

    pub async fn client(&self) -> GatewayClient<Channel> {
        GatewayClient::connect(format!("http://{}", self.grpc)).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Drains and waits for the gateway to stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}
