//! Layered configuration: a typed struct's `Default` → optional TOML files (each over the ones before it, so a
//! deployment adds a file such as the TLS settings beside the main one) → `VIDMESH__SECTION__KEY` environment
//! variables (double underscore between levels, values parsed as TOML scalars where they can be).
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

/// Failure to assemble a configuration: a file or value that does not parse, or values that do not hold together.
/// The message names each offending key (`section.key`).
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A problem found outside [`Validate`] (a file a key names, read at start-up); `message` names the key.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A configuration that checks itself once loaded: ranges, non-empty lists, pairs that must agree.
///
/// Invariant: a config that passed [`load`] passes `validate`, so code uses its values as they are (no clamps).
pub trait Validate {
    /// Adds every problem found to `checks`, each under its full key (`prefix` + the field's name).
    fn check(&self, prefix: &str, checks: &mut Checks);

    /// `Ok` when [`Validate::check`] finds nothing; otherwise every problem, each naming its key.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut checks = Checks::default();
        self.check("", &mut checks);
        checks.finish()
    }
}

/// The problems found while validating a configuration, each as `key: what is wrong`.
#[derive(Debug, Default)]
pub struct Checks(Vec<String>);

impl Checks {
    /// Records a problem with `key` unless `ok`.
    pub fn require(&mut self, ok: bool, key: impl std::fmt::Display, problem: impl std::fmt::Display) -> &mut Self {
        if !ok {
            self.0.push(format!("{key}: {problem}"));
        }
        self
    }

    /// `key` (whose value is `value`) must be at least `min`.
    pub fn at_least<T>(&mut self, key: impl std::fmt::Display, value: T, min: T) -> &mut Self
    where
        T: PartialOrd + std::fmt::Display,
    {
        let problem = format!("must be at least {min} (is {value})");
        self.require(value >= min, key, problem)
    }

    /// `key` (whose value is `value`) must lie in `[lo, hi]`.
    pub fn within<T>(&mut self, key: impl std::fmt::Display, value: T, lo: T, hi: T) -> &mut Self
    where
        T: PartialOrd + std::fmt::Display,
    {
        let problem = format!("must be between {lo} and {hi} (is {value})");
        self.require(value >= lo && value <= hi, key, problem)
    }

    /// Validates the nested section `section` of `prefix`.
    pub fn section(&mut self, prefix: &str, section: &str, value: &dyn Validate) -> &mut Self {
        value.check(&format!("{prefix}{section}."), self);
        self
    }

    /// `Ok` when nothing was recorded, else one error listing every problem.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() { Ok(()) } else { Err(ConfigError(self.0.join("; "))) }
    }
}

/// Loads `T` from its defaults, then `file` (if given; it must exist), then the `VIDMESH__…` variables of `env`,
/// and validates the result ([`Validate`]).
///
/// `env` is usually `std::env::vars().collect()`; variables without the prefix are ignored.
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    load_over(&[], file, env)
}

/// As [`load`] with every file of `files` in order, each over the ones before it.
pub fn load_files<T>(files: &[&Path], env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    load_layers(&[], files, env)
}

/// Loads `T` from its defaults and `vars` as its environment (`("VIDMESH__SECTION__KEY", "value")`), as a test of a
/// config's rules does.
pub fn load_vars<T>(vars: &[(&str, &str)]) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load(None, &env)
}

/// As [`load`], with `defaults` (`("section.key", value)`) laid over `T`'s own defaults, below the file and the
/// environment: how an embedding process (the `vidmesh` CLI) changes a default without hiding a configured value.
pub fn load_over<T>(
    defaults: &[(&str, String)],
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    load_layers(defaults, file.as_slice(), env)
}

fn load_layers<T>(defaults: &[(&str, String)], files: &[&Path], env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let own = config::Config::try_from(&T::default()).map_err(|e| ConfigError(e.to_string()))?;
    let mut overlay = config::Config::builder();
    for (key, value) in defaults {
        overlay = overlay.set_override(*key, value.as_str()).map_err(|e| ConfigError(e.to_string()))?;
    }
    let overlay = overlay.build().map_err(|e| ConfigError(e.to_string()))?;
    let mut builder = config::Config::builder().add_source(own).add_source(overlay);
    for &path in files {
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
    let config: T = builder.build().and_then(|c| c.try_deserialize()).map_err(|e| ConfigError(e.to_string()))?;
    config.validate()?;
    Ok(config)
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
    /// TLS on the gRPC port (`[server.tls]`; mutual TLS unless turned off there). Off by default. The metrics port
    /// stays plain HTTP, and serves `/livez` and `/readyz` for probes that cannot present a client certificate.
    pub tls: crate::tls::ServerTls,
}

impl Default for ServerConfig {
    /// The text-encoder's ports; every stage's config starts from [`ServerConfig::on`] its own.
    fn default() -> Self {
        Self::on(crate::stage::ports::TEXT_ENCODER)
    }
}

impl Validate for ServerConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.require(
            self.listen != self.metrics_listen || self.listen.port() == 0,
            format_args!("{prefix}metrics_listen"),
            format_args!("must differ from {prefix}listen ({})", self.listen),
        );
        checks.section(prefix, "tls", &self.tls);
    }
}

impl Validate for TelemetryConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.within(format_args!("{prefix}sample_ratio"), self.sample_ratio, 0.0, 1.0);
    }
}

impl ServerConfig {
    /// Listening on every interface at `ports`, 30 s drain grace and keep-alive.
    pub fn on(ports: crate::stage::Ports) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], ports.grpc)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], ports.metrics)),
            drain_grace_secs: 30,
            keepalive_secs: 30,
            tls: crate::tls::ServerTls::default(),
        }
    }

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

    impl Validate for Svc {
        fn check(&self, prefix: &str, checks: &mut Checks) {
            checks.section(prefix, "server", &self.server).section(prefix, "telemetry", &self.telemetry);
        }
    }

    #[test]
    fn invalid_values_name_their_keys() {
        let env = HashMap::from([
            ("VIDMESH__TELEMETRY__SAMPLE_RATIO".to_string(), "1.5".to_string()),
            ("VIDMESH__SERVER__METRICS_LISTEN".to_string(), "0.0.0.0:50051".to_string()),
        ]);
        let err = load::<Svc>(None, &env).unwrap_err().to_string();
        assert!(err.contains("telemetry.sample_ratio: must be between 0 and 1 (is 1.5)"), "{err}");
        assert!(err.contains("server.metrics_listen: must differ from server.listen"), "{err}");
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
    fn later_files_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (main, tls) = (dir.path().join("svc.toml"), dir.path().join("tls.toml"));
        std::fs::write(&main, "max_batch = 4\n[server]\ndrain_grace_secs = 5\n").unwrap();
        std::fs::write(&tls, "[server]\ndrain_grace_secs = 6\n[server.tls]\nrequire_client_cert = false\n").unwrap();
        let c: Svc = load_files(&[&main, &tls], &HashMap::new()).unwrap();
        assert_eq!((c.max_batch, c.server.drain_grace_secs), (4, 6));
        assert!(!c.server.tls.require_client_cert);
        let env = HashMap::from([("VIDMESH__SERVER__TLS__CERT_FILE".to_string(), "/tls/tls.crt".to_string())]);
        let err = load_files::<Svc>(&[&main, &tls], &env).unwrap_err().to_string();
        assert!(err.contains("server.tls.key_file: must be set with server.tls.cert_file"), "{err}");
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
