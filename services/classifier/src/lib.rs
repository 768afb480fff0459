//! vidmesh classifier: was this video made by vidmesh? Keyed watermark detection and C2PA validation combined into
//! one verdict with reasons (see [`verdict`] for what may be claimed on which evidence).
//!
//! [`serve`] answers health and reflection at once (NOT_SERVING), opens storage and reads the key and trust
//! anchors, then flips health to SERVING. A start-up failure stops the server with that error. On shutdown it
//! drains like every vidmesh service.

pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod passive;
pub mod server;
pub mod verdict;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use vidmesh_proto::classifier::v1::classifier_server::ClassifierServer;
use vidmesh_runtime::{Drain, Health, LoadOrServe};

pub use config::Config;
pub use error::Error;
pub use vidmesh_runtime::service::Options;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.classifier.v1.Classifier";

/// Serves with the process environment and a metrics endpoint on `config.server.metrics_listen`.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
    let opts = Options::from_process(config.server.metrics_listen)
        .await
        .map_err(|e| Error::Config(format!("metrics_listen {}: {e}", config.server.metrics_listen)))?;
    serve_with(config, listener, shutdown, opts).await
}

/// Serves on `listener` until `shutdown` fires (then drains), or until start-up fails.
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
        Arc::new(server::State { classifier: OnceLock::new(), metrics: OnceLock::new(), drain: Drain::new(&shutdown) });
    // Requests carry whole MP4s: the message limit follows max_video_bytes (plus room for the envelope).
    let routes = Routes::new(health_svc).add_service(
        ClassifierServer::new(server::Service(state.clone()))
            .max_decoding_message_size(config.max_video_bytes.saturating_add(1 << 16)),
    );
    let server_config = config.server.clone();
    let runtime = tokio::runtime::Handle::current();
    let load = move |env: &HashMap<String, String>, registry: &prometheus::Registry| {
        let passive = engine::load_passive(&config, env)?;
        let metrics = metrics::Metrics::register(registry).map_err(|e| Error::Config(format!("metrics: {e}")))?;
        let loaded = runtime.block_on(engine::Classifier::load(&config, passive))?;
        let _ = state.metrics.set(metrics);
        tracing::info!("classifier ready");
        let _ = state.classifier.set(Arc::new(loaded));
        Ok(())
    };
    vidmesh_runtime::service::run(routes, health, &server_config, listener, shutdown, opts, load).await.map_err(|e| {
        match e {
            LoadOrServe::Load(e) => e,
            LoadOrServe::Serve(e) => Error::Internal(e.to_string()),
        }
    })
}
