//! The mesh for gateway tests: the four stages as real gRPC servers on 127.0.0.1:0 (in this process, on the
//! bundled model), and gateways in front of them with their gRPC and HTTP listeners.
#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;

pub const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

pub fn bundle() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny").display().to_string()
}

fn opts(registry: &prometheus::Registry) -> vidmesh_runtime::service::Options<std::future::Ready<()>> {
    vidmesh_runtime::service::Options {
        env: std::env::vars().collect(),
        registry: registry.clone(),
        metrics_listener: None,
        load_gate: std::future::ready(()),
    }
}

async fn stage<F, E>(
    service: &str,
    shutdown: &CancellationToken,
    serve: impl FnOnce(TcpListener, CancellationToken) -> F,
) -> SocketAddr
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + std::fmt::Debug + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut task = tokio::spawn(serve(listener, shutdown.clone()));
    vidmesh_testkit::connect_when_serving(addr, service, &mut task).await;
    addr
}

/// The four stages, sharing local storage under `root`.
pub struct Stages {
    pub addrs: [SocketAddr; 4],
    /// The denoiser's metrics (steps run, active requests).
    pub denoiser_metrics: prometheus::Registry,
    pub shutdown: CancellationToken,
}

impl Stages {
    /// No stages at all (for tests of what is refused before any stage is called).
    pub fn empty() -> Self {
        let nowhere = "127.0.0.1:9".parse().unwrap();
        Self { addrs: [nowhere; 4], denoiser_metrics: prometheus::Registry::new(), shutdown: CancellationToken::new() }
    }

    pub async fn start(root: &Path) -> Self {
        let shutdown = CancellationToken::new();
        let denoiser_metrics = prometheus::Registry::new();
        let r = prometheus::Registry::new();
        let te = stage(vidmesh_text_encoder::SERVICE_NAME, &shutdown, |l, s| {
            let mut c = vidmesh_text_encoder::Config::default();
            c.model.bundle = bundle();
            vidmesh_text_encoder::serve_with(c, l, s, opts(&r))
        })
        .await;
        let dn = stage(vidmesh_denoiser::SERVICE_NAME, &shutdown, |l, s| {
            let mut c = vidmesh_denoiser::Config::default();
            c.model.bundle = bundle();
            c.max_steps = 1000;
            vidmesh_denoiser::serve_with(c, l, s, opts(&denoiser_metrics))
        })
        .await;
        let root_s = root.display().to_string();
        let dc = stage(vidmesh_decoder::SERVICE_NAME, &shutdown, |l, s| {
            let mut c = vidmesh_decoder::Config::default();
            c.model.bundle = bundle();
            c.storage.local_root = root_s.clone();
            c.watermark.key_hex = KEY_HEX.into();
            vidmesh_decoder::serve_with(c, l, s, opts(&prometheus::Registry::new()))
        })
        .await;
        let cl = stage(vidmesh_classifier::SERVICE_NAME, &shutdown, |l, s| {
            let mut c = vidmesh_classifier::Config::default();
            c.model.bundle = bundle();
            c.storage.local_root = root_s.clone();
            c.watermark.key_hex = KEY_HEX.into();
            vidmesh_classifier::serve_with(c, l, s, opts(&prometheus::Registry::new()))
        })
        .await;
        Self { addrs: [te, dn, dc, cl], denoiser_metrics, shutdown }
    }

    /// A gateway config pointing at these stages, storing under `root`, jobs in `store_url`.
    pub fn gateway_config(&self, root: &Path, store_url: &str) -> vidmesh_gateway::Config {
        let mut c = vidmesh_gateway::Config::default();
        c.model.bundle = bundle();
        c.storage.local_root = root.display().to_string();
        c.store.url = store_url.into();
        c.store.poll_ms = 200;
        c.limits.max_steps = 1000;
        let ep = |a: SocketAddr| vec![format!("http://{a}")];
        c.stages.text_encoder.endpoints = ep(self.addrs[0]);
        c.stages.denoiser.endpoints = ep(self.addrs[1]);
        c.stages.decoder.endpoints = ep(self.addrs[2]);
        c.stages.classifier.endpoints = ep(self.addrs[3]);
        c
    }
}

/// A running gateway.
pub struct Gateway {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub registry: prometheus::Registry,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), vidmesh_gateway::Error>>,
}

impl Gateway {
    pub async fn start(config: vidmesh_gateway::Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc, http_addr) = (listener.local_addr().unwrap(), http.local_addr().unwrap());
        let registry = prometheus::Registry::new();
        let opts = vidmesh_gateway::Options {
            env: Default::default(),
            registry: registry.clone(),
            metrics_listener: None,
            http_listener: Some(http),
        };
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(vidmesh_gateway::serve_with(config, listener, shutdown.clone(), opts));
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
