//! The life of a model-serving stage, written once: answer health (NOT_SERVING) and reflection at once, load and
//! warm the model on a blocking thread (after an optional gate), flip to SERVING, serve, drain on shutdown. A load
//! failure ends `run` with that error, so the process exits and the orchestrator shows why.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::server::{GrpcServer, LoadOrServe};
use crate::{Health, ServerConfig};

/// What a stage takes besides its config; tests inject these instead of touching the process.
pub struct Options<G> {
    /// The process environment (for `ORT_DYLIB_PATH` and the like).
    pub env: HashMap<String, String>,
    /// Metrics registry; the stage registers its collectors here.
    pub registry: Registry,
    /// Metrics listener; `None` = no metrics endpoint.
    pub metrics_listener: Option<TcpListener>,
    /// Model loading starts when this resolves (production: at once).
    pub load_gate: G,
}

impl Options<std::future::Ready<()>> {
    /// Production options: the process environment, a new registry, metrics served on `metrics_listen`.
    pub async fn from_process(metrics_listen: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            env: std::env::vars().collect(),
            registry: Registry::new(),
            metrics_listener: Some(TcpListener::bind(metrics_listen).await?),
            load_gate: std::future::ready(()),
        })
    }
}

/// Serves `routes` on `listener` while `load(env, registry)` runs on a blocking thread (see the module docs).
pub async fn run<E, G, L>(
    routes: Routes,
    health: Health,
    config: &ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: Options<G>,
    load: L,
) -> Result<(), LoadOrServe<E>>
where
    E: Send + 'static,
    G: Future<Output = ()> + Send + 'static,
    L: FnOnce(&HashMap<String, String>, &Registry) -> Result<(), E> + Send + 'static,
{
    let stop = shutdown.child_token();
    if let Some(l) = opts.metrics_listener {
        tokio::spawn(crate::metrics::serve(l, opts.registry.clone(), stop.clone()));
    }
    let (env, registry, gate) = (opts.env, opts.registry, opts.load_gate);
    let loading = async move {
        gate.await;
        match tokio::task::spawn_blocking(move || load(&env, &registry)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    };
    let result = GrpcServer::new(routes, health, config).serve_loading(listener, shutdown, loading).await;
    stop.cancel();
    result
}
