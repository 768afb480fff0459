//! vidmesh gateway: the public face of the mesh. gRPC (`vidmesh.gateway.v1.Gateway`) and an OpenAI-compatible
//! HTTP API in front; durable jobs in SQLite or PostgreSQL; admission (API keys, rates, quotas, the queue bound,
//! the prompt policy) before any compute; a runner per replica that claims jobs and drives the four stages through
//! one balanced, traced, retrying client stack each.
//!
//! [`serve`] checks everything it depends on before answering (the bundle's manifest, storage, the job store), then
//! serves with health SERVING. On shutdown: health NOT_SERVING, no new submissions, watches end with UNAVAILABLE
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use vidmesh_proto::gateway::v1::gateway_server::GatewayServer;
use vidmesh_runtime::{GrpcServer, Health};

pub use config::Config;
pub use error::Error;

/// The gRPC service name health reports on.
pub const SERVICE_NAME: &str = "vidmesh.gateway.v1.Gateway";

/// What the gateway takes besides its config; tests inject these instead of touching the process.
pub struct Options {
    /// The process environment (for `HOSTNAME`).
    pub env: HashMap<String, String>,
    /// Metrics registry.
    pub registry: Registry,
    /// Metrics listener; `None` = no metrics endpoint.
    pub metrics_listener: Option<TcpListener>,
    /// The HTTP API's listener; `None` = no HTTP API.
    pub http_listener: Option<TcpListener>,
}

impl Options {
    /// Production options: the process environment, metrics and HTTP bound from the config.
    pub async fn from_process(config: &Config) -> Result<Self, Error> {
        let bind = |addr| async move {
            TcpListener::bind(addr).await.map_err(|e| Error::Unavailable(format!("binding {addr}: {e}")))
        };
        Ok(Self {
            env: std::env::vars().collect(),
            registry: Registry::new(),
            metrics_listener: Some(bind(config.server.metrics_listen).await?),
            http_listener: Some(bind(config.http.listen).await?),
        })
    }
}

/// Serves with the process environment, metrics and HTTP on their configured addresses.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
    let opts = Options::from_process(&config).await?;
    serve_with(config, listener, shutdown, opts).await
}

/// Serves gRPC on `listener` (and HTTP/metrics on the options' listeners) until `shutdown` fires, then drains.
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: Options,
) -> Result<(), Error> {
    let model = config.model.clone();
    let bundle = tokio::task::spawn_blocking(move || model.open(&[]))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::InvalidArgument(format!("model bundle: {e}")))?;
    let storage = config.storage.open().await?;
    let store = store::Store::connect(&config.store).await?;
    let metrics = metrics::Metrics::register(&opts.registry).map_err(|e| Error::Internal(format!("metrics: {e}")))?;
    let admission = admission::Admission::new(&config.admission, &config.policy)?;
    let stages = stages::Stages::connect(&config.stages, &shutdown)?;
    let poll = Duration::from_millis(config.store.poll_ms.max(10));
    let pipeline = Arc::new(pipeline::Pipeline {
        store: store.clone(),
        stages,
        storage: storage.clone(),
        url_ttl: Duration::from_secs(config.stages.url_ttl_secs),
        job_timeout: Duration::from_secs(config.stages.job_timeout_secs),
        metrics: metrics.clone(),
        tail_seconds: Mutex::new(None),
        negative: bundle.manifest.takes_negative(),
    });
    let api = Arc::new(api::Api {
        store,
        admission,
        manifest: bundle.manifest,
        limits: config.limits.clone(),
        storage,
        metrics,
        shutdown: shutdown.clone(),
        poll,
        retention_secs: config.store.retention_secs,
    });
    let host = opts.env.get("HOSTNAME").cloned().unwrap_or_else(|| "gateway".into());
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
    let stop = shutdown.child_token();
    if let Some(l) = opts.metrics_listener {
        tokio::spawn(vidmesh_runtime::metrics::serve(l, opts.registry.clone(), stop.clone()));
    }
    let runner_task = tokio::spawn(runner.run(shutdown.clone()));
    let http_task = opts.http_listener.map(|l| {
        let router = http::router(api.clone(), config.http.max_body_bytes);
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).with_graceful_shutdown(token.cancelled_owned()).await {
                tracing::error!("HTTP API: {e}");
            }
        })
    });
    let (health, health_svc) = Health::new(SERVICE_NAME).await;
    health.serving().await;
    let routes = Routes::new(health_svc).add_service(GatewayServer::new(server::Service(api)));
    let served = GrpcServer::new(routes, health, &config.server).serve(listener, shutdown).await;
    let _ = runner_task.await;
    if let Some(t) = http_task {
        let _ = t.await;
    }
    stop.cancel();
    served.map_err(|e| Error::Internal(e.to_string()))
}
