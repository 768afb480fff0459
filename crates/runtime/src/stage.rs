//! A vidmesh stage, written once. A stage names itself and its config (whose defaults listen on its [`ports`]), and
//! builds its gRPC routes and the work to do before it is ready ([`Stage::start`]); this module does the rest for
//! every stage:
//! config in layers (validated), telemetry, binding and announcing its addresses, health and reflection, TLS,
//! metrics (and HTTP probes) on their own port, the load on a blocking thread after an optional gate, background
//! tasks, and the drain.
//!
//! Invariants:
//! - health is NOT_SERVING until the stage's load succeeded (a stage without a load is SERVING once started);
//! - a start-up failure (config, bind, telemetry, a dependency, the load) ends serving with a [`StartError`] that
//!   says which, never with a caller-facing status;
//! - after `shutdown` the server drains (see [`crate::server`]) and the stage's tasks are awaited before returning.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use prometheus::Registry;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::config::{ConfigError, Validate};
use crate::server::{GrpcServer, LoadOrServe, ServeError};
use crate::{Health, ServerConfig, TelemetryConfig};

/// Any error, boxed: what a stage's start-up step failed with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The default ports of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// gRPC (the service, health, reflection).
    pub grpc: u16,
    /// Prometheus `GET /metrics`.
    pub metrics: u16,
}

/// Every stage's default ports, in one place (a config file or `VIDMESH__SERVER__*` overrides them).
pub mod ports {
    use super::Ports;
    /// The gateway (its OpenAI-compatible HTTP API listens on [`GATEWAY_HTTP`]).
    pub const GATEWAY: Ports = Ports { grpc: 50050, metrics: 9094 };
    /// The gateway's HTTP API.
    pub const GATEWAY_HTTP: u16 = 8080;
    /// The text-encoder.
    pub const TEXT_ENCODER: Ports = Ports { grpc: 50051, metrics: 9090 };
    /// The denoiser.
    pub const DENOISER: Ports = Ports { grpc: 50052, metrics: 9091 };
    /// The decoder.
    pub const DECODER: Ports = Ports { grpc: 50053, metrics: 9092 };
    /// The classifier.
    pub const CLASSIFIER: Ports = Ports { grpc: 50054, metrics: 9093 };
}

/// What the shell needs of a stage's config: the shared `[server]` and `[telemetry]` sections, loadable in layers
/// and validated.
pub trait StageConfig: Default + Serialize + DeserializeOwned + Validate + Send + 'static {
    /// `[server]`.
    fn server(&self) -> &ServerConfig;
    /// `[telemetry]`.
    fn telemetry(&self) -> &TelemetryConfig;
    /// Further addresses the stage listens on, each under its config key (the gateway's `http.listen`); bound by
    /// [`bind`] and handed to the stage by [`Context::take_listener`].
    fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        Vec::new()
    }
}

/// Implements [`StageConfig`] for a config struct whose `[server]` and `[telemetry]` sections are its `server` and
/// `telemetry` fields (a stage without further listeners).
#[macro_export]
macro_rules! stage_config {
    ($config:ty) => {
        impl $crate::StageConfig for $config {
            fn server(&self) -> &$crate::ServerConfig {
                &self.server
            }
            fn telemetry(&self) -> &$crate::TelemetryConfig {
                &self.telemetry
            }
        }
    };
}

/// One vidmesh service: what differs between stages. The rest is [`serve_with`].
pub trait Stage: Send + 'static {
    /// The stage's config.
    type Config: StageConfig;
    /// The process name (`vidmesh-denoiser`): the telemetry service name and the announcement's first word.
    const NAME: &'static str;
    /// The gRPC service name health reports on (`vidmesh.denoiser.v1.Denoiser`).
    const SERVICE: &'static str;
    /// Builds the stage's own routes (health and reflection are added around them) and its load. Runs before the
    /// listener is served; an error here is a start-up error.
    fn start(config: Self::Config, ctx: Context) -> impl Future<Output = Result<Started, StartError>> + Send;
}

/// What a stage gets to start with.
pub struct Context {
    /// The process environment (or a test's).
    pub env: HashMap<String, String>,
    /// Where the stage registers its collectors.
    pub registry: Registry,
    /// Fires when the stage should drain.
    pub shutdown: CancellationToken,
    listeners: HashMap<&'static str, TcpListener>,
}

impl Context {
    /// The listener bound for `key` (see [`StageConfig::listeners`]); `None` when it was not bound (tests).
    pub fn take_listener(&mut self, key: &str) -> Option<TcpListener> {
        self.listeners.remove(key)
    }
}

type Load = Box<dyn FnOnce() -> Result<(), BoxError> + Send>;

/// A started stage: its routes, what to load before SERVING, and tasks that run until shutdown.
pub struct Started {
    routes: Routes,
    load: Option<Load>,
    tasks: Vec<JoinHandle<()>>,
}

impl Started {
    /// Serves `routes`; SERVING at once unless [`Started::loading`] is added.
    pub fn new(routes: Routes) -> Self {
        Self { routes, load: None, tasks: Vec::new() }
    }

    /// Runs `load` on a blocking thread once the gate opens; health flips to SERVING when it returns `Ok`, and
    /// serving stops with [`StartError::Load`] when it fails.
    pub fn loading<E: Into<BoxError>>(mut self, load: impl FnOnce() -> Result<(), E> + Send + 'static) -> Self {
        self.load = Some(Box::new(move || load().map_err(Into::into)));
        self
    }

    /// A task that runs until shutdown; awaited after the drain.
    pub fn task(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }
}

/// Why a stage could not start, or stopped abnormally. Never sent to callers.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config does not load or does not validate (the message names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An address could not be bound.
    #[error("cannot listen on {key} = {addr}: {source}")]
    Bind {
        /// The config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Logging or tracing could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// Something the stage depends on (its model bundle, storage, the job store) failed its start-up check.
    #[error("{what}: {source}")]
    Dependency {
        /// What was checked.
        what: &'static str,
        /// Why it failed.
        source: BoxError,
    },
    /// The stage's load (model, warm-up) failed.
    #[error("loading: {0}")]
    Load(BoxError),
    /// Serving failed (transport, reflection, or the drain grace expired).
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl StartError {
    /// `what` failed its start-up check with `source`.
    pub fn dependency(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Dependency { what, source: source.into() }
    }
}

/// What a stage takes besides its config; tests inject these instead of touching the process.
pub struct Options<G = std::future::Ready<()>> {
    /// The process environment (for `ORT_DYLIB_PATH`, `HOSTNAME` and the like).
    pub env: HashMap<String, String>,
    /// Metrics registry; the stage registers its collectors here.
    pub registry: Registry,
    /// Metrics listener; `None` = no metrics endpoint.
    pub metrics_listener: Option<TcpListener>,
    /// The load starts when this resolves (production: at once).
    pub load_gate: G,
    /// Further listeners by config key ([`StageConfig::listeners`]); one left out is not served.
    pub listeners: HashMap<&'static str, TcpListener>,
}

impl Options {
    /// The process environment, a new registry, no metrics endpoint, no further listeners, load at once: a stage
    /// embedded in a test, a bench or another process.
    pub fn local() -> Self {
        Self::with_env(std::env::vars().collect())
    }

    /// As [`Options::local`] with `env` as the environment.
    pub fn with_env(env: HashMap<String, String>) -> Self {
        Self {
            env,
            registry: Registry::new(),
            metrics_listener: None,
            load_gate: std::future::ready(()),
            listeners: HashMap::new(),
        }
    }
}

async fn listen(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { key, addr, source })
}

/// Binds the metrics address and the further listeners of `config`.
async fn bound(config: &impl StageConfig, env: HashMap<String, String>) -> Result<Options, StartError> {
    let metrics = listen("server.metrics_listen", config.server().metrics_listen).await?;
    let mut opts = Options { metrics_listener: Some(metrics), ..Options::with_env(env) };
    for (key, addr) in config.listeners() {
        opts.listeners.insert(key, listen(key, addr).await?);
    }
    Ok(opts)
}

/// Binds the stage's gRPC, metrics and further addresses from `config`, announces them on stderr
/// (`vidmesh-gateway grpc=… http=… metrics=…`), and returns the gRPC listener and the options to serve with.
pub async fn bind<S: Stage>(
    config: &S::Config,
    env: HashMap<String, String>,
) -> Result<(TcpListener, Options), StartError> {
    let grpc = listen("server.listen", config.server().listen).await?;
    let opts = bound(config, env).await?;
    let addr = |l: Option<&TcpListener>| l.and_then(|l| l.local_addr().ok()).map_or("off".into(), |a| a.to_string());
    eprintln!(
        "{} grpc={} http={} metrics={}",
        S::NAME,
        addr(Some(&grpc)),
        addr(opts.listeners.get("http.listen")),
        addr(opts.metrics_listener.as_ref())
    );
    Ok((grpc, opts))
}

/// Serves with the process environment and the addresses of `config` (metrics, further listeners).
pub async fn serve<S: Stage>(
    config: S::Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let opts = bound(&config, std::env::vars().collect()).await?;
    serve_with::<S, _>(config, listener, shutdown, opts).await
}

/// Serves the stage on `listener` until `shutdown` fires (then drains), or until start-up fails (see the module
/// invariants).
pub async fn serve_with<S, G>(
    config: S::Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    opts: Options<G>,
) -> Result<(), StartError>
where
    S: Stage,
    G: Future<Output = ()> + Send + 'static,
{
    // A config built in code (tests, embedding processes) holds to the same rules as one loaded from a file.
    config.validate()?;
    let server = config.server().clone();
    let tls = server.tls.load("server.tls.")?;
    let stop = shutdown.child_token();
    let (health, health_svc) = Health::new(S::SERVICE).await;
    if let Some(l) = opts.metrics_listener {
        tokio::spawn(crate::metrics::serve_with_health(l, opts.registry.clone(), Some(health.clone()), stop.clone()));
    }
    let ctx = Context { env: opts.env, registry: opts.registry, shutdown: shutdown.clone(), listeners: opts.listeners };
    let started = S::start(config, ctx).await;
    let result = match started {
        Err(e) => Err(e),
        Ok(started) => {
            let routes = started.routes.add_service(health_svc);
            let grpc = GrpcServer::new(routes, health.clone(), &server).with_tls(tls);
            let result = match started.load {
                None => {
                    health.serving().await;
                    grpc.serve(listener, shutdown).await.map_err(StartError::from)
                }
                Some(load) => {
                    let gate = opts.load_gate;
                    let loading = async move {
                        gate.await;
                        match tokio::task::spawn_blocking(load).await {
                            Ok(result) => result,
                            Err(e) => std::panic::resume_unwind(e.into_panic()),
                        }
                    };
                    grpc.serve_loading(listener, shutdown, loading).await.map_err(|e| match e {
                        LoadOrServe::Load(e) => StartError::Load(e),
                        LoadOrServe::Serve(e) => StartError::Serve(e),
                    })
                }
            };
            for task in started.tasks {
                let _ = task.await;
            }
            result
        }
    };
    stop.cancel();
    result
}

/// A stage's whole `main`: config from the files named by the arguments (none or more, each over the ones before
/// it; `vidmesh-denoiser config.toml tls.toml`) and `VIDMESH__…` variables,
/// telemetry, bind and announce, serve until SIGTERM/Ctrl-C, drain. A start-up error is printed and the process
/// exits with status 1.
pub fn main<S: Stage>() -> std::process::ExitCode {
    let run = async {
        let env: HashMap<String, String> = std::env::vars().collect();
        let files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
        let files: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
        let config: S::Config = crate::config::load_files(&files, &env)?;
        let telemetry = crate::telemetry::init(S::NAME, config.telemetry(), &env)?;
        let (listener, opts) = bind::<S>(&config, env).await?;
        let result = serve_with::<S, _>(config, listener, crate::shutdown::on_signals(), opts).await;
        telemetry.shutdown();
        result
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    match runtime.map_err(|e| StartError::dependency("tokio runtime", e)).and_then(|rt| rt.block_on(run)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", S::NAME);
            std::process::ExitCode::FAILURE
        }
    }
}
