//! What every vidmesh service shares, written once: layered configuration, telemetry (tracing + OpenTelemetry with
//! W3C trace context on every gRPC hop), grpc.health.v1, reflection, TLS from PEM files (mutual by default:
//! [`tls`]), Prometheus metrics and HTTP probes on their own port,
//! graceful SIGTERM drain, the [`Stage`] shell every service is served through (one `serve`, one `main`), and
//! tensor ⇄ proto conversion.
//!
//! Services own their hot path; this crate owns the plumbing around it.

pub mod config;
pub mod health;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod stage;
pub mod status;
pub mod telemetry;
pub mod tensor;
pub mod tls;

pub use config::{ServerConfig, TelemetryConfig};
pub use health::Health;
pub use server::{GrpcServer, LoadOrServe, ServeError};
pub use shutdown::Drain;
pub use stage::{Stage, StageConfig, StartError, Started};
pub use telemetry::TraceContextInterceptor;
pub use tensor::{TensorError, TensorF32};
