//! vidmesh classifier: was this video made by vidmesh? Keyed watermark detection and C2PA validation combined into
//! one verdict with reasons (see [`engine::verdict`] for what may be claimed on which evidence).
//!
//! Served through the shared [`Stage`] shell: health and reflection answer at once (NOT_SERVING); the stage opens
//! storage, reads the key and trust anchors and loads the passive detector, then flips health to SERVING. A
//! start-up failure stops the server with that error. On shutdown it drains like every vidmesh service.

pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod server;

use std::sync::{Arc, OnceLock};

use tonic::service::Routes;
use vidmesh_proto::classifier::v1::classifier_server::ClassifierServer;
use vidmesh_runtime::stage::{Context, StartError, Started};
use vidmesh_runtime::{Drain, Stage};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.classifier.v1.Classifier";

/// The classifier stage.
pub struct Classifier;

impl Stage for Classifier {
    type Config = Config;
    const NAME: &'static str = "vidmesh-classifier";
    const SERVICE: &'static str = SERVICE_NAME;

    async fn start(config: Config, ctx: Context) -> Result<Started, StartError> {
        let metrics = metrics::Metrics::register(&ctx.registry).map_err(|e| StartError::dependency("metrics", e))?;
        let state = Arc::new(server::State { classifier: OnceLock::new(), metrics, drain: Drain::new(&ctx.shutdown) });
        // Requests carry whole MP4s: the message limit follows max_video_bytes (plus room for the envelope).
        let routes = Routes::new(
            ClassifierServer::new(server::Service(state.clone()))
                .max_decoding_message_size(config.max_video_bytes.saturating_add(1 << 16)),
        );
        let runtime = tokio::runtime::Handle::current();
        Ok(Started::new(routes).loading(move || {
            let passive = engine::load_passive(&config, &ctx.env)?;
            let loaded = runtime.block_on(engine::Classifier::load(&config, passive))?;
            tracing::info!("classifier ready");
            let _ = state.classifier.set(Arc::new(loaded));
            Ok::<(), Error>(())
        }))
    }
}

vidmesh_runtime::stage_config!(Config);
