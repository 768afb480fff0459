//! The gateway's configuration: `[server]` (gRPC), `[http]` (the OpenAI-compatible front), `[store]` (jobs),
//! `[stages]` (where the four stages are, and `[stages.tls]`: how they are reached over TLS), `[storage]` (where
//! the decoder stores videos: the gateway serves content and presigns URLs from it), `[model]`, `[admission]`,
//! `[policy]`. Defaults describe one process on a laptop: SQLite beside the working directory, stages on the ports
//! `vidmesh serve all` uses, no API keys required. Every value is checked when the config loads ([`validate`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vidmesh_model::ModelConfig;
use vidmesh_runtime::stage::ports;
use vidmesh_runtime::{ServerConfig, TelemetryConfig};
use vidmesh_storage::StorageConfig;

/// The whole gateway configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen addresses and drain.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// The OpenAI-compatible HTTP API.
    pub http: HttpConfig,
    /// The durable job store.
    pub store: StoreConfig,
    /// The downstream stages.
    pub stages: StagesConfig,
    /// The storage the decoder writes to (read here for content downloads and presigned URLs).
    pub storage: StorageConfig,
    /// The served model bundle (only its manifest is read: defaults, supported sizes, frame counts, fps).
    pub model: ModelConfig,
    /// API keys, quotas, rate limits, the queue.
    pub admission: AdmissionConfig,
    /// The prompt policy filter, applied before any compute.
    pub policy: PolicyConfig,
    /// Request limits.
    pub limits: LimitsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::on(ports::GATEWAY),
            telemetry: TelemetryConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            stages: StagesConfig::default(),
            storage: StorageConfig::default(),
            model: ModelConfig::default(),
            admission: AdmissionConfig::default(),
            policy: PolicyConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of the OpenAI-compatible API (`/v1/videos`).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a client has to send a request's whole head (request line and headers), in seconds, counted from
    /// when the server starts waiting for it (an idle keep-alive connection waits the same). A connection whose
    /// head is not complete by then is closed without an answer (HTTP/1; the HTTP server cannot answer a request
    /// it has not read).
    pub header_read_timeout_secs: u64,
    /// The longest a request body may stall, in seconds: when no part of the body arrives for this long the
    /// request is answered 408 (OpenAI error body) and its connection closed. Counted between arrivals, so a slow
    /// but steady upload of any size passes.
    pub body_read_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], ports::GATEWAY_HTTP)),
            max_body_bytes: 40 << 20,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
        }
    }
}

impl HttpConfig {
    /// [`Self::header_read_timeout_secs`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// [`Self::body_read_timeout_secs`] as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (one replica; created if missing) or `postgres://USER@HOST/DB` (any number of replicas).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// A running job's owner renews its lease this often; a replica that stops renewing for `lease_secs` is
    /// presumed dead and its jobs are re-run by another replica.
    pub lease_secs: u64,
    /// How often a replica looks for queued jobs and expired leases even without a notification, in milliseconds.
    pub poll_ms: u64,
    /// SQLite only: how long start-up waits for another process to let go of the store (one replica per SQLite
    /// file; the second process fails with a message naming PostgreSQL), in milliseconds.
    pub lock_wait_ms: u64,
    /// Finished jobs (and their videos) are deleted this long after they were submitted, in seconds; 0 = kept
    /// forever. The API reports the moment as `expires_at`.
    pub retention_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://vidmesh-jobs.db".into(),
            max_connections: 8,
            lease_secs: 15,
            poll_ms: 1000,
            lock_wait_ms: 10_000,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

impl StoreConfig {
    /// The lease duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

/// One downstream stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StageConfig {
    /// `http://HOST:PORT` endpoints, or `https://HOST:PORT` when `[stages.tls]` is set (then every stage's are, and
    /// HOST is the name the stage's certificate must carry). Host names are re-resolved every `resolve_secs` and
    /// every address is balanced over (a Kubernetes headless Service gives one address per pod). Empty disables
    /// the stage (only the classifier may be disabled).
    pub endpoints: Vec<String>,
    /// How often host names are resolved again, in seconds.
    pub resolve_secs: u64,
    /// Connection timeout per attempt, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Attempts of a call before the job fails, when the call fails in a way a retry may mend: UNAVAILABLE (no
    /// replica reachable) or the connection breaking under it (a replica killed mid-call; a streamed call is made
    /// again from its start). Every stage call is idempotent: same inputs and seed, same outputs, same storage
    /// keys. The job's deadline bounds the retries too.
    pub attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt up to `max_backoff_ms`.
    pub backoff_ms: u64,
    /// Longest retry delay, in milliseconds. With the defaults (10 attempts, 200 ms doubling to 5 s) a stage may be
    /// unreachable for about 26 s — a replica replaced by Kubernetes — before the job fails.
    pub max_backoff_ms: u64,
}

impl StageConfig {
    fn at(port: u16) -> Self {
        Self { endpoints: vec![format!("http://127.0.0.1:{port}")], ..Self::default() }
    }
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            resolve_secs: 10,
            connect_timeout_ms: 2000,
            attempts: 10,
            backoff_ms: 200,
            max_backoff_ms: 5000,
        }
    }
}

/// `[stages]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StagesConfig {
    /// text-encoder.
    pub text_encoder: StageConfig,
    /// denoiser.
    pub denoiser: StageConfig,
    /// decoder.
    pub decoder: StageConfig,
    /// classifier (optional: no endpoints = jobs complete without a detection report).
    pub classifier: StageConfig,
    /// A job's whole deadline, in seconds; each stage call gets what is left of it (as grpc-timeout).
    pub job_timeout_secs: u64,
    /// Jobs this replica runs at once; the rest wait in the queue. 0 = this replica serves the APIs only.
    pub max_running: usize,
    /// How long a presigned content URL stays valid, in seconds.
    pub url_ttl_secs: u64,
    /// TLS to the stages, shared by the four clients: the CA their certificates chain to, and the certificate the
    /// gateway presents (mutual TLS). Set = every endpoint must be `https://`; empty `ca_file` = plaintext.
    pub tls: vidmesh_runtime::tls::ClientTls,
}

impl Default for StagesConfig {
    fn default() -> Self {
        Self {
            text_encoder: StageConfig::at(ports::TEXT_ENCODER.grpc),
            denoiser: StageConfig::at(ports::DENOISER.grpc),
            decoder: StageConfig::at(ports::DECODER.grpc),
            classifier: StageConfig::at(ports::CLASSIFIER.grpc),
            job_timeout_secs: 900,
            max_running: 4,
            url_ttl_secs: 3600,
            tls: vidmesh_runtime::tls::ClientTls::default(),
        }
    }
}

/// A tenant: who may call, and how much.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// Name (jobs are listed per tenant).
    pub name: String,
    /// Lowercase hex SHA-256 of each API key of this tenant (the keys themselves never appear in config:
    /// `printf %s "$KEY" | sha256sum`).
    pub key_sha256: Vec<String>,
    /// Jobs queued or running at once; more are refused with RESOURCE_EXHAUSTED / 429.
    pub max_active_jobs: u32,
    /// Submissions per minute (token bucket; per replica).
    pub rate_per_minute: u32,
    /// Submissions allowed in a burst above the rate.
    pub burst: u32,
    /// Highest priority this tenant may ask for (higher asks are capped to it).
    pub max_priority: i32,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            key_sha256: Vec::new(),
            max_active_jobs: 8,
            rate_per_minute: 60,
            burst: 10,
            max_priority: 0,
        }
    }
}

/// `[admission]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// The tenants and their keys.
    pub tenants: Vec<TenantConfig>,
    /// A TOML file of more tenants (`[[tenants]]` tables as above), read at start-up: mount it from a Secret so
    /// key digests are managed apart from the config. Empty = none.
    pub tenants_file: String,
    /// When set, calls without an API key act as this tenant (development); when empty, a key is required.
    /// The tenant must be listed in `tenants` or it gets the defaults of a tenant.
    pub anonymous_tenant: String,
    /// Jobs waiting in the queue over all tenants; beyond it submissions are refused with RESOURCE_EXHAUSTED / 429.
    pub max_queued: u32,
    /// The retry-after suggested when the queue or a quota is full, in seconds.
    pub retry_after_secs: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            tenants: Vec::new(),
            tenants_file: String::new(),
            anonymous_tenant: "default".into(),
            max_queued: 64,
            retry_after_secs: 10,
        }
    }
}

/// A category of prompts the gateway refuses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyCategory {
    /// Category name returned to the caller (e.g. "violence").
    pub name: String,
    /// Words or phrases (case-insensitive, matched on word boundaries) that put a prompt in this category.
    pub terms: Vec<String>,
    /// The reason the caller reads.
    pub reason: String,
}

/// `[policy]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Refused categories; none = everything passes.
    pub categories: Vec<PolicyCategory>,
    /// Apply the categories to the negative prompt too.
    pub check_negative_prompt: bool,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest prompt (and negative prompt), in bytes.
    pub max_prompt_bytes: usize,
    /// Most denoising steps a request may ask for.
    pub max_steps: u32,
    /// Largest guidance scale.
    pub max_guidance: f32,
    /// Largest reference image or video a conditioned request may upload, in bytes (HTTP bodies are also bound by
    /// `http.max_body_bytes`).
    pub max_reference_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_prompt_bytes: 2000, max_steps: 200, max_guidance: 20.0, max_reference_bytes: 32 << 20 }
    }
}

pub mod validate;
