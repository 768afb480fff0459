//! vidmesh text-encoder: prompts → per-token hidden states for the DiT's cross-attention.
//!
//! [`serve`] starts answering health and reflection at once (NOT_SERVING), loads and warms the model on a blocking
//! thread, then flips health to SERVING. A load failure stops the server with that error (so the orchestrator
//! restarts it and shows why). On shutdown it drains like every vidmesh service.

pub mod config;
pub mod engine;
pub mod error;
pub mod server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use vidmesh_model::Onnx;
use vidmesh_proto::text_encoder::v1::text_encoder_server::TextEncoderServer;
use vidmesh_runtime::{Drain, Health, LoadOrServe};

pub use config::Config;
pub use error::Error;
pub use vidmesh_runtime::service::Options;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.text_encoder.v1.TextEncoder";

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
    let state =
        Arc::new(server::State { encoder: OnceLock::new(), drain: Drain::new(&shutdown), config: config.clone() });
    let routes = Routes::new(health_svc).add_service(TextEncoderServer::new(server::Service(state.clone())));
    let server_config = config.server.clone();
    let load = move |env: &HashMap<String, String>, registry: &prometheus::Registry| {
        let onnx = Onnx::init(&config.onnxruntime, env)?;
        let loaded = engine::Encoder::load(&config, &onnx, registry)?;
        tracing::info!(model = %loaded.model, version = %loaded.version, "text encoder loaded and warm");
        let _ = state.encoder.set(loaded);
        Ok(())
    };
    vidmesh_runtime::service::run(routes, health, &server_config, listener, shutdown, opts, load).await.map_err(|e| {
        match e {
            LoadOrServe::Load(e) => e,
            LoadOrServe::Serve(e) => Error::Inference(e.to_string()),
        }
    })
}
