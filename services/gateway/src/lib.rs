//! vidmesh gateway: the public face of the mesh. gRPC (`vidmesh.gateway.v1.Gateway`) and an OpenAI-compatible
//! HTTP API in front; durable jobs in SQLite or PostgreSQL; admission (API keys, rates, quotas, the queue bound,
//! the prompt policy) before any compute; a runner per replica that claims jobs and drives the four stages through
//! one balanced, traced, retrying client stack each.
//!
//! Served through the shared [`Stage`] shell ([`Gateway`]): it checks everything it depends on before answering
//! (the bundle's manifest, storage, the job store), then serves with health SERVING. On shutdown: health NOT_SERVING, no new submissions, watches end with UNAVAILABLE
//! (clients resume on another replica), running jobs get the drain grace and are handed back if they need longer.

pub mod admission;
pub mod api;
pub mod config;
pub mod error;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod pipeline;
pub mod runner;
pub mod server;
pub mod stages;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::Routes;
use vidmesh_proto::gateway::v1::gateway_server::GatewayServer;
use vidmesh_runtime::Stage;
use vidmesh_runtime::stage::{Context, StartError, Started};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.gateway.v1.Gateway";

/// The config key of the HTTP API's address (and the name its listener is bound under).
pub const HTTP_LISTEN: &str = "http.listen";

/// The gateway stage. Its start checks what it depends on (the bundle's manifest, storage, the job store) and
/// fails with [`StartError::Dependency`] naming which; it has no load, so it is SERVING once started. The HTTP API
/// is served on the listener bound for `http.listen` (none in tests that do not bind one).
pub struct Gateway;

impl Stage for Gateway {
    type Config = Config;
    const NAME: &'static str = "vidmesh-gateway";
    const SERVICE: &'static str = SERVICE_NAME;

    async fn start(config: Config, mut ctx: Context) -> Result<Started, StartError> {
        let model = config.model.clone();
        let bundle = tokio::task::spawn_blocking(move || model.open(&[]))
            .await
            .map_err(|e| StartError::dependency("model bundle", e))?
            .map_err(|e| StartError::dependency("model bundle", e))?;
        let storage = config.storage.open().await.map_err(|e| StartError::dependency("storage", e))?;
        let store = store::Store::connect(&config.store).await.map_err(|e| StartError::dependency("job store", e))?;
        let metrics = metrics::Metrics::register(&ctx.registry).map_err(|e| StartError::dependency("metrics", e))?;
        let admission = admission::Admission::new(&config.admission, &config.policy)
            .map_err(|e| StartError::dependency("admission", e))?;
        let stages = stages::Stages::connect(&config.stages, &ctx.shutdown)
            .map_err(|e| StartError::dependency("stages", e))?
            .count_retries(&metrics.retries);
        let poll = Duration::from_millis(config.store.poll_ms);
        let pipeline = Arc::new(pipeline::Pipeline {
            store: store.clone(),
            stages,
            storage: storage.clone(),
            url_ttl: Duration::from_secs(config.stages.url_ttl_secs),
            job_timeout: Duration::from_secs(config.stages.job_timeout_secs),
            metrics: metrics.clone(),
            progress: pipeline::Progress::default(),
            negative: bundle.manifest.takes_negative(),
            manifest: bundle.manifest.clone(),
        });
        let api = Arc::new(api::Api {
            store,
            admission,
            manifest: bundle.manifest,
            limits: config.limits.clone(),
            storage,
            metrics,
            shutdown: ctx.shutdown.clone(),
            poll,
            retention_secs: config.store.retention_secs,
        });
        let host = ctx.env.get("HOSTNAME").cloned().unwrap_or_else(|| "gateway".into());
        let runner = Arc::new(runner::Runner {
            pipeline,
            owner: format!("{host}-{}", uuid::Uuid::new_v4().simple()),
            lease: config.store.lease(),
            poll,
            max_running: config.stages.max_running,
            grace: config.server.drain_grace(),
            retention: (config.store.retention_secs > 0).then(|| Duration::from_secs(config.store.retention_secs)),
        });
        tracing::info!(owner = %runner.owner, "gateway replica starting");
        // A Submit may carry a reference upload of up to limits.max_reference_bytes.
        let grpc = GatewayServer::new(server::Service(api.clone()))
            .max_decoding_message_size(config.limits.max_reference_bytes.saturating_add(1 << 20));
        let mut started = Started::new(Routes::new(grpc)).task(tokio::spawn(runner.run(ctx.shutdown.clone())));
        if let Some(listener) = ctx.take_listener(HTTP_LISTEN) {
            let router = http::router(api, &config.http);
            let (token, http_config) = (ctx.shutdown.clone(), config.http.clone());
            started =
                started.task(tokio::spawn(async move { http::serve(listener, router, &http_config, token).await }));
        }
        Ok(started)
    }
}

impl vidmesh_runtime::StageConfig for Config {
    fn server(&self) -> &vidmesh_runtime::ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &vidmesh_runtime::TelemetryConfig {
        &self.telemetry
    }
    fn listeners(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        vec![(HTTP_LISTEN, self.http.listen)]
    }
}
