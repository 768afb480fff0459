//! The mesh's four stages served in this process on 127.0.0.1:0 with a model bundle (vidmesh-tiny unless a test
//! names another), for tests
//! and benches that need real stages without separate processes (crates/cli/tests/mesh.rs runs them as processes).
//!
//! Invariant: [`serve`] returns only once the stage's health says SERVING, and fails (rather than hangs) when the
//! stage stops before that — e.g. when ORT_DYLIB_PATH is not set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The bundled model's directory.
pub fn bundle() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny").display().to_string()
}

/// Which stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// text-encoder.
    TextEncoder,
    /// denoiser.
    Denoiser,
    /// decoder (stores under the storage root, watermarks with the key).
    Decoder,
    /// classifier (reads the storage root, detects with the key).
    Classifier,
}

/// What the stages share.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Local storage root of the decoder and the classifier.
    pub storage_root: PathBuf,
    /// Watermark key (hex) of the decoder and the classifier.
    pub watermark_key_hex: String,
    /// The denoiser's step limit.
    pub max_steps: u32,
    /// The model bundle every stage serves.
    pub bundle: String,
}

impl Setup {
    /// Storage under `root`, a fixed test key, up to 1000 steps.
    pub fn new(root: &Path) -> Self {
        Self { storage_root: root.to_path_buf(), watermark_key_hex: "5a".repeat(32), max_steps: 1000, bundle: bundle() }
    }
}

fn opts(registry: &Registry) -> vidmesh_runtime::service::Options<std::future::Ready<()>> {
    vidmesh_runtime::service::Options {
        env: std::env::vars().collect(),
        registry: registry.clone(),
        metrics_listener: None,
        load_gate: std::future::ready(()),
    }
}

/// Serves one stage until `shutdown`, its collectors in `registry`; returns its address once SERVING.
pub async fn serve(
    kind: Kind,
    setup: &Setup,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (o, s, root, key) =
        (opts(registry), shutdown.clone(), setup.storage_root.display().to_string(), setup.watermark_key_hex.clone());
    let (name, mut task) = match kind {
        Kind::TextEncoder => {
            let mut c = vidmesh_text_encoder::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            let t = tokio::spawn(async move {
                vidmesh_text_encoder::serve_with(c, listener, s, o).await.map_err(|e| e.to_string())
            });
            (vidmesh_text_encoder::SERVICE_NAME, t)
        }
        Kind::Denoiser => {
            let mut c = vidmesh_denoiser::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            c.max_steps = setup.max_steps;
            let t = tokio::spawn(async move {
                vidmesh_denoiser::serve_with(c, listener, s, o).await.map_err(|e| e.to_string())
            });
            (vidmesh_denoiser::SERVICE_NAME, t)
        }
        Kind::Decoder => {
            let mut c = vidmesh_decoder::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            c.storage.local_root = root;
            c.watermark.key_hex = key;
            let t =
                tokio::spawn(
                    async move { vidmesh_decoder::serve_with(c, listener, s, o).await.map_err(|e| e.to_string()) },
                );
            (vidmesh_decoder::SERVICE_NAME, t)
        }
        Kind::Classifier => {
            let mut c = vidmesh_classifier::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            c.storage.local_root = root;
            c.watermark.key_hex = key;
            let t = tokio::spawn(async move {
                vidmesh_classifier::serve_with(c, listener, s, o).await.map_err(|e| e.to_string())
            });
            (vidmesh_classifier::SERVICE_NAME, t)
        }
    };
    tokio::select! {
        serving = serving(addr, name) => serving.map(|()| addr),
        ended = &mut task => Err(format!("{name} stopped before serving (is ORT_DYLIB_PATH set?): {ended:?}")),
    }
}

/// Waits until `service` at `addr` reports SERVING.
pub async fn serving(addr: SocketAddr, service: &str) -> Result<(), String> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest { service: service.into() })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    while let Some(msg) = watch.message().await.map_err(|e| e.to_string())? {
        if msg.status == 1 {
            return Ok(());
        }
    }
    Err(format!("{service}: the health stream ended before SERVING"))
}

/// The four stages, running until `shutdown` fires.
pub struct Stages {
    /// text-encoder, denoiser, decoder, classifier.
    pub addrs: [SocketAddr; 4],
    /// The denoiser's collectors (steps run, active requests).
    pub denoiser_metrics: Registry,
    /// Stops them all.
    pub shutdown: CancellationToken,
}

impl Stages {
    /// Starts the four stages with `setup`.
    pub async fn start(setup: &Setup) -> Result<Self, String> {
        let shutdown = CancellationToken::new();
        let denoiser_metrics = Registry::new();
        let other = Registry::new();
        let te = serve(Kind::TextEncoder, setup, &other, &shutdown).await?;
        let dn = serve(Kind::Denoiser, setup, &denoiser_metrics, &shutdown).await?;
        let dc = serve(Kind::Decoder, setup, &Registry::new(), &shutdown).await?;
        let cl = serve(Kind::Classifier, setup, &Registry::new(), &shutdown).await?;
        Ok(Self { addrs: [te, dn, dc, cl], denoiser_metrics, shutdown })
    }
}

/// Runs `req` on the denoiser behind `channel` to the end and returns the final latents reassembled from their
/// chunks.
pub async fn denoise(
    channel: tonic::transport::Channel,
    req: vidmesh_proto::denoiser::v1::DenoiseRequest,
) -> Result<vidmesh_runtime::TensorF32, String> {
    use vidmesh_proto::denoiser::v1::{denoise_event, denoiser_client::DenoiserClient};
    let mut events = DenoiserClient::new(channel).denoise(req).await.map_err(|e| e.to_string())?.into_inner();
    let mut asm = vidmesh_runtime::tensor::Assembler::new("latents");
    let mut latents = None;
    while let Some(ev) = events.message().await.map_err(|e| e.to_string())? {
        if let Some(denoise_event::Event::Latents(chunk)) = ev.event {
            latents = asm.push(chunk).map_err(|e| e.to_string())?.or(latents);
        }
    }
    latents.ok_or_else(|| "the denoiser streamed no latents".to_string())
}
