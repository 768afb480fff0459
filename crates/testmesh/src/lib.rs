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
use vidmesh_runtime::Stage;
use vidmesh_runtime::stage::Options;

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

/// A stage served in this process: its task ends when it has drained after shutdown (or failed to start).
pub type Task = tokio::task::JoinHandle<Result<(), vidmesh_runtime::StartError>>;

/// Serves `S` with `config` on 127.0.0.1:0 until `shutdown`; returns its address and task once SERVING, or the
/// reason it stopped before that.
pub async fn serve_stage<S: Stage>(
    config: S::Config,
    opts: Options,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, Task), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut task = tokio::spawn(vidmesh_runtime::stage::serve_with::<S, _>(config, listener, shutdown.clone(), opts));
    tokio::select! {
        serving = vidmesh_runtime::health::wait_serving(addr, S::SERVICE) => match serving {
            Ok(_) => Ok((addr, task)),
            Err(e) => Err(e.to_string()),
        },
        ended = &mut task => Err(format!("{} stopped before serving (is ORT_DYLIB_PATH set?): {ended:?}", S::NAME)),
    }
}

/// Serves one stage until `shutdown`, its collectors in `registry`; returns its address once SERVING.
pub async fn serve(
    kind: Kind,
    setup: &Setup,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Result<SocketAddr, String> {
    let (root, key) = (setup.storage_root.display().to_string(), setup.watermark_key_hex.clone());
    let opts = Options { registry: registry.clone(), ..Options::local() };
    let served = match kind {
        Kind::TextEncoder => {
            let mut c = vidmesh_text_encoder::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            serve_stage::<vidmesh_text_encoder::TextEncoder>(c, opts, shutdown).await
        }
        Kind::Denoiser => {
            let mut c = vidmesh_denoiser::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            c.max_steps = setup.max_steps;
            serve_stage::<vidmesh_denoiser::Denoiser>(c, opts, shutdown).await
        }
        Kind::Decoder => {
            let mut c = vidmesh_decoder::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            (c.storage.local_root, c.watermark.key_hex) = (root, key);
            serve_stage::<vidmesh_decoder::Decoder>(c, opts, shutdown).await
        }
        Kind::Classifier => {
            let mut c = vidmesh_classifier::Config::default();
            c.model.bundle.clone_from(&setup.bundle);
            (c.storage.local_root, c.watermark.key_hex) = (root, key);
            serve_stage::<vidmesh_classifier::Classifier>(c, opts, shutdown).await
        }
    };
    served.map(|(addr, _)| addr)
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
