//! Layered configuration: a typed struct's `Default` → an optional TOML file → `VIDMESH__SECTION__KEY`
//! environment variables (double underscore between levels, values parsed as TOML scalars where they can be).
//!
//! The environment is passed in as a map rather than read behind the caller's back, so tests inject it without
//! touching the process environment (`std::env::set_var` is banned by clippy.toml).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Prefix of every vidmesh environment variable.
pub const ENV_PREFIX: &str = "VIDMESH";

/// Failure to assemble a configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Loads `T` from its defaults, then `file` (if given; it must exist), then the `VIDMESH__…` variables of `env`.
///
/// `env` is usually `std::env::vars().collect()`; variables without the prefix are ignored.
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = config::Config::try_from(&T::default()).map_err(|e| ConfigError(e.to_string()))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError(format!("config file {} does not exist", path.display())));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let vars: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars)),
    );
    builder.build().and_then(|c| c.try_deserialize()).map_err(|e| ConfigError(e.to_string()))
}

/// Where and how a service listens, shared by every service's config under `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address (health, reflection and the service itself).
    pub listen: SocketAddr,
    /// Prometheus metrics listen address (`GET /metrics`); a separate port so scraping never competes with RPCs.
    pub metrics_listen: SocketAddr,
    /// On SIGTERM: how long in-flight requests may run before the process exits anyway, in seconds.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    pub drain_grace_secs: u64,
    /// HTTP/2 keep-alive ping interval in seconds (0 = off), so idle connections through load balancers survive.
    pub keepalive_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            drain_grace_secs: 30,
            keepalive_secs: 30,
        }
    }
}

impl ServerConfig {
    /// The drain grace period.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_grace_secs)
    }
}

/// Logging and tracing, shared by every service's config under `[telemetry]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives (RUST_LOG syntax), e.g. `info,vidmesh_denoiser=debug`.
    pub log_filter: String,
    /// Log as JSON lines (for log collectors) instead of human-readable text.
    pub log_json: bool,
    /// OTLP/gRPC endpoint for traces, e.g. `http://otel-collector:4317`; empty = no export. The standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variable is used when this is empty.
    pub otlp_endpoint: String,
    /// Fraction of root traces sampled, in [0, 1]; child spans follow their parent's decision.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_filter: "info".into(), log_json: false, otlp_endpoint: String::new(), sample_ratio: 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Svc {
        server: ServerConfig,
        telemetry: TelemetryConfig,
        max_batch: usize,
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.toml");
        std::fs::write(&file, "max_batch = 4\n[server]\ndrain_grace_secs = 5\nkeepalive_secs = 7\n").unwrap();
        let env = HashMap::from([
            ("VIDMESH__SERVER__DRAIN_GRACE_SECS".to_string(), "9".to_string()),
            ("VIDMESH__TELEMETRY__LOG_JSON".to_string(), "true".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ]);
        let c: Svc = load(Some(&file), &env).unwrap();
        assert_eq!(c.max_batch, 4);
        assert_eq!(c.server.keepalive_secs, 7);
        assert_eq!(c.server.drain_grace_secs, 9, "environment overrides the file");
        assert!(c.telemetry.log_json);
        assert_eq!(c.server.listen, ServerConfig::default().listen);
    }

    #[test]
    fn missing_file_and_bad_values_are_errors() {
        let none = HashMap::new();
        let err = load::<Svc>(Some(Path::new("/nonexistent/vidmesh.toml")), &none).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let env = HashMap::from([("VIDMESH__MAX_BATCH".to_string(), "many".to_string())]);
        assert!(load::<Svc>(None, &env).is_err());
    }
}
