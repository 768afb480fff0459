//! vidmesh text-encoder: prompts → per-token hidden states for the DiT's cross-attention.
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
use vidmesh_proto::text_encoder::v1::text_encoder_server::TextEncoderServer;
use vidmesh_runtime::stage::{Context, StartError, Started};
use vidmesh_runtime::{Drain, Stage};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.text_encoder.v1.TextEncoder";

/// The text-encoder stage.
pub struct TextEncoder;

impl Stage for TextEncoder {
    type Config = Config;
    const NAME: &'static str = "vidmesh-text-encoder";
    const SERVICE: &'static str = SERVICE_NAME;

    async fn start(config: Config, ctx: Context) -> Result<Started, StartError> {
        let state = Arc::new(server::State {
            encoder: OnceLock::new(),
            drain: Drain::new(&ctx.shutdown),
            config: config.clone(),
        });
        let routes = Routes::new(TextEncoderServer::new(server::Service(state.clone())));
        Ok(Started::new(routes).loading(move || {
            let onnx = Onnx::init(&config.onnxruntime, &ctx.env)?;
            let loaded = engine::Encoder::load(&config, &onnx, &ctx.registry)?;
            tracing::info!(model = %loaded.model, version = %loaded.version, "text encoder loaded and warm");
            let _ = state.encoder.set(loaded);
            Ok::<(), Error>(())
        }))
    }
}

vidmesh_runtime::stage_config!(Config);
