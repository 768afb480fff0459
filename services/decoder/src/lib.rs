//! vidmesh decoder: latents → VAE frames in temporal chunks → MP4 + thumbnail → storage, streamed progress.
//!
//! Served through the shared [`Stage`] shell: health and reflection answer at once (NOT_SERVING), the model loads
//! and warms on a blocking thread, then health flips to SERVING. A load failure stops the server with that error
//! (so the orchestrator restarts it and shows why). On shutdown it drains like every vidmesh service.

pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod server;

use std::sync::{Arc, OnceLock};

use tonic::service::Routes;
use vidmesh_model::Onnx;
use vidmesh_proto::decoder::v1::decoder_server::DecoderServer;
use vidmesh_runtime::stage::{Context, StartError, Started};
use vidmesh_runtime::{Drain, Stage};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.decoder.v1.Decoder";

/// The decoder stage.
pub struct Decoder;

impl Stage for Decoder {
    type Config = Config;
    const NAME: &'static str = "vidmesh-decoder";
    const SERVICE: &'static str = SERVICE_NAME;

    async fn start(config: Config, ctx: Context) -> Result<Started, StartError> {
        let metrics = metrics::Metrics::register(&ctx.registry).map_err(|e| StartError::dependency("metrics", e))?;
        let state = Arc::new(server::State {
            decoder: OnceLock::new(),
            metrics,
            drain: Drain::new(&ctx.shutdown),
            config: config.clone(),
        });
        let routes = Routes::new(
            DecoderServer::new(server::Service(state.clone())).max_decoding_message_size(config.max_request_bytes),
        );
        let runtime = tokio::runtime::Handle::current();
        Ok(Started::new(routes).loading(move || {
            let onnx = Onnx::init(&config.onnxruntime, &ctx.env)?;
            let loaded = runtime.block_on(engine::Decoder::load(&config, &onnx))?;
            let m = &loaded.manifest.model;
            tracing::info!(model = %m.name, version = %m.version, "decoder loaded and warmed up");
            let _ = state.decoder.set(loaded);
            Ok::<(), Error>(())
        }))
    }
}

vidmesh_runtime::stage_config!(Config);
