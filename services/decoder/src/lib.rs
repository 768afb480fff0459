//! vidmesh decoder: latents → VAE frames in temporal chunks → MP4 + thumbnail → storage, streamed progress.
//!
//! [`serve`] starts answering health and reflection at once (NOT_SERVING), loads and warms the model on a blocking
//! thread, then flips health to SERVING. A load failure stops the server with that error (so the orchestrator
//! restarts it and shows why). On shutdown it drains like every vidmesh service.

pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use vidmesh_model::Onnx;
use vidmesh_proto::decoder::v1::decoder_server::DecoderServer;
use vidmesh_runtime::{Drain, Health, LoadOrServe};

pub use config::Config;
pub use error::Error;
pub use vidmesh_runtime::service::Options;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.decoder.v1.Decoder";

/// Serves with the process environment and a metrics endpoint on `config.server.metrics_listen`.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
    let opts = Options::from_process(config.server.metrics_listen)
        .await
        .map_err(|e| Error::InvalidArgument(format!("metrics_listen {}: {e}", config.server.metrics_listen)))?;
    serve_with(config, listener, shutdown, opts).await
}

/// Serves on `listener` until `shutdown` fires (then drains), or until the model fails to load.
pub async fn serve_with<G>(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: Options<G>,
) -> Result<(), Error>
where
    G: Future<Output = ()> + Send + 'static,
{
    let (health, health_svc) = Health::new(SERVICE_NAME).await;
    let state = Arc::new(server::State {
        decoder: OnceLock::new(),
        metrics: OnceLock::new(),
        drain: Drain::new(&shutdown),
        config: config.clone(),
    });
    let routes = Routes::new(health_svc).add_service(
        DecoderServer::new(server::Service(state.clone())).max_decoding_message_size(config.max_request_bytes),
    );
    let server_config = config.server.clone();
    let runtime = tokio::runtime::Handle::current();
    let load = move |env: &HashMap<String, String>, registry: &prometheus::Registry| {
        let metrics = metrics::Metrics::register(registry).map_err(|e| Error::Inference(format!("metrics: {e}")))?;
        let _ = state.metrics.set(metrics);
        let onnx = Onnx::init(&config.onnxruntime, env)?;
        let loaded = runtime.block_on(engine::Decoder::load(&config, &onnx))?;
        let m = &loaded.manifest.model;
        tracing::info!(model = %m.name, version = %m.version, "decoder loaded and warmed up");
        let _ = state.decoder.set(loaded);
        Ok(())
    };
    vidmesh_runtime::service::run(routes, health, &server_config, listener, shutdown, opts, load).await.map_err(|e| {
        match e {
            LoadOrServe::Load(e) => e,
            LoadOrServe::Serve(e) => Error::Inference(e.to_string()),
        }
    })
}
