//! grpc.health.v1 for one service. The service starts NOT_SERVING and flips to SERVING only when its model is
//! loaded and warmed ([`Health::serving`]); a drain flips it back so load balancers stop sending new work.
//! The overall status (service name "") follows the service's. The service name [`LIVENESS`] is SERVING for as long
//! as the process serves at all — loading and draining included — for liveness probes that must not restart a pod
//! that is merely warming up or draining. [`Health::is_serving`] is the same readiness for the metrics port's
//! `/readyz`, which probes use when the gRPC port asks for client certificates (`[server.tls]`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health service name a liveness probe asks for.
pub const LIVENESS: &str = "liveness";

/// The health reporter of one named gRPC service.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
    serving: Arc<AtomicBool>,
}

impl Health {
    /// A reporter for `service` (the fully-qualified gRPC name, e.g. `vidmesh.denoiser.v1.Denoiser`), starting
    /// NOT_SERVING, and the health service to mount.
    pub async fn new(
        service: &'static str,
    ) -> (Self, tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) {
        let (reporter, server) = tonic_health::server::health_reporter();
        let health = Self { reporter, service, serving: Arc::new(AtomicBool::new(false)) };
        health.reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;
        health.set(ServingStatus::NotServing).await;
        (health, server)
    }

    async fn set(&self, status: ServingStatus) {
        self.serving.store(status == ServingStatus::Serving, Ordering::Release);
        self.reporter.set_service_status(self.service, status).await;
        self.reporter.set_service_status("", status).await;
    }

    /// The model is loaded and warm: accept traffic.
    pub async fn serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    /// Draining or broken: stop receiving traffic.
    pub async fn not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    /// Whether the service reports SERVING (readiness).
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }
}

/// Connects to `addr` and waits until `service` reports SERVING there; returns the channel for use. Fails (rather
/// than hangs) when the connection fails or the health stream ends first, e.g. because the server stopped.
pub async fn wait_serving(
    addr: std::net::SocketAddr,
    service: &str,
) -> Result<tonic::transport::Channel, crate::stage::BoxError> {
    wait_serving_at(tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?, service).await
}

/// As [`wait_serving`] through `endpoint` (e.g. `https://…` with a [`tonic::transport::ClientTlsConfig`]).
pub async fn wait_serving_at(
    endpoint: tonic::transport::Endpoint,
    service: &str,
) -> Result<tonic::transport::Channel, crate::stage::BoxError> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let addr = endpoint.uri().clone();
    let channel = endpoint.connect().await?;
    let mut watch =
        HealthClient::new(channel.clone()).watch(HealthCheckRequest { service: service.into() }).await?.into_inner();
    while let Some(msg) = watch.message().await? {
        if msg.status == ServingStatus::Serving as i32 {
            return Ok(channel);
        }
    }
    Err(format!("{service} at {addr}: the health stream ended before SERVING").into())
}
