//! vidmesh denoiser: text states + seed → N scheduler steps of the DiT with CFG → clean latents, streamed.
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
use vidmesh_proto::denoiser::v1::denoiser_server::DenoiserServer;
use vidmesh_runtime::stage::{Context, StartError, Started};
use vidmesh_runtime::{Drain, Stage};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.denoiser.v1.Denoiser";

/// The denoiser stage.
pub struct Denoiser;

impl Stage for Denoiser {
    type Config = Config;
    const NAME: &'static str = "vidmesh-denoiser";
    const SERVICE: &'static str = SERVICE_NAME;

    async fn start(config: Config, ctx: Context) -> Result<Started, StartError> {
        let state = Arc::new(server::State {
            denoiser: OnceLock::new(),
            drain: Drain::new(&ctx.shutdown),
            config: config.clone(),
        });
        let routes = Routes::new(
            DenoiserServer::new(server::Service(state.clone())).max_decoding_message_size(config.max_request_bytes),
        );
        Ok(Started::new(routes).loading(move || {
            let onnx = Onnx::init(&config.onnxruntime, &ctx.env)?;
            let loaded = engine::Denoiser::load(&config, &onnx, &ctx.registry)?;
            let m = &loaded.manifest.model;
            tracing::info!(model = %m.name, version = %m.version, "denoiser loaded and warmed up");
            let _ = state.denoiser.set(loaded);
            Ok::<(), Error>(())
        }))
    }
}

vidmesh_runtime::stage_config!(Config);
