//! Server bootstrap: one tonic server per service with health, reflection (v1 and v1alpha), W3C trace context extraction, HTTP/2
//! keep-alive, TLS when configured (`[server.tls]`, see [`crate::tls`]), and a graceful drain on shutdown.
//!
//! Invariant: after `shutdown` fires, the health status is NOT_SERVING, connections get GOAWAY (no new calls),
//! and `serve` returns when in-flight calls are done or the grace period ends, whichever comes first.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::health::Health;

/// Why serving stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// In-flight calls were still running when the grace period ended.
    #[error("drain grace period of {0:?} expired with calls still in flight")]
    GraceExpired(Duration),
}

/// A service's routes plus what every vidmesh server adds around them.
pub struct GrpcServer {
    routes: Routes,
    health: Health,
    grace: Duration,
    keepalive: Option<Duration>,
    tls: Option<tonic::transport::ServerTlsConfig>,
}

impl GrpcServer {
    /// Serves `routes` (the service itself and its health service) with reflection added.
    pub fn new(routes: Routes, health: Health, config: &crate::ServerConfig) -> Self {
        Self {
            routes,
            health,
            grace: config.drain_grace(),
            keepalive: (config.keepalive_secs > 0).then(|| Duration::from_secs(config.keepalive_secs)),
            tls: None,
        }
    }

    /// Serves over TLS with `tls` (from [`crate::tls::ServerTls::load`]); `None` = plaintext.
    pub fn with_tls(mut self, tls: Option<tonic::transport::ServerTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Serves on `listener` until `shutdown` fires, then drains (see the module invariant).
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
        // Reflection in both versions: grpcurl and current clients speak v1; grpcio-reflection, Postman, Evans and
        // older grpcurl speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(vidmesh_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let router = builder
            .trace_fn(crate::telemetry::server_span)
            .http2_keepalive_interval(self.keepalive)
            .add_routes(self.routes)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        let health = self.health.clone();
        let signal = shutdown.clone();
        // TCP_NODELAY: small gRPC frames (progress events, unary replies) must not wait out Nagle + delayed ACK.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let serving = router.serve_with_incoming_shutdown(incoming, async move {
            signal.cancelled().await;
            health.not_serving().await;
            tracing::info!("draining: no new calls, waiting for in-flight ones");
        });
        let grace = self.grace;
        tokio::select! {
            result = serving => {
                result?;
                tracing::info!("drained");
                Ok(())
            }
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("drain grace period {grace:?} expired; stopping with calls in flight");
                Err(ServeError::GraceExpired(grace))
            }
        }
    }
}

/// Why [`GrpcServer::serve_loading`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadOrServe<E> {
    /// The model failed to load (the server stopped at once; nothing was admitted).
    #[error(transparent)]
    Load(E),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl GrpcServer {
    /// Serves at once (health NOT_SERVING) while `load` runs; when it succeeds health flips to SERVING, when it
    /// fails the server stops with its error. Then as [`GrpcServer::serve`].
    pub async fn serve_loading<E, F>(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        load: F,
    ) -> Result<(), LoadOrServe<E>>
    where
        E: Send + 'static,
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    {
        let health = self.health.clone();
        let draining = shutdown.clone();
        let loader = tokio::spawn(async move {
            load.await?;
            if !draining.is_cancelled() {
                health.serving().await;
                tracing::info!("model loaded and warm: SERVING");
            }
            Ok::<(), E>(())
        });
        let serving = self.serve(listener, shutdown);
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => {
                served?;
                Ok(())
            }
            loaded = loader => match loaded {
                Ok(Err(e)) => Err(LoadOrServe::Load(e)),
                Ok(Ok(())) => Ok(serving.await?),
                // A panicking loader is a bug: surface it rather than serve NOT_SERVING forever.
                Err(join) => std::panic::resume_unwind(join.into_panic()),
            },
        }
    }
}
