//! Where vidmesh keeps its outputs. One [`Storage`] trait, two backends: [`LocalStorage`] (the embedded default:
//! a directory, atomic writes, keys that cannot escape it) and `S3Storage` (feature `s3`, on by default: aws-sdk-s3
//! against AWS or any S3-compatible server: endpoint override, path-style addressing, multipart upload for large
//! objects, presigned GET URLs).
//!
//! Invariants: every key is validated by [`validate_key`] before any I/O (relative, `/`-separated, no `.`/`..`
//! segments, no empty segments, a conservative character set, at most 512 bytes); a successful `put` returns the
//! object's sha256 and size as stored; a reader never observes a partially written object.

mod key;
mod local;
mod outputs;
#[cfg(feature = "s3")]
mod s3;
mod s3_config;

pub use key::validate_key;
pub use local::LocalStorage;
pub use outputs::{JobFile, JobOutputs};
#[cfg(feature = "s3")]
pub use s3::S3Storage;
pub use s3_config::S3Config;

use std::time::Duration;

use bytes::Bytes;

/// Why a storage operation failed. Messages name the key or the setting; credentials never appear.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key is not acceptable.
    #[error("invalid storage key {0:?}: {1}")]
    InvalidKey(String, String),
    /// No object under the key.
    #[error("no object at {0}")]
    NotFound(String),
    /// The URI names a scheme or bucket this storage does not serve.
    #[error("unknown storage URI {0:?}: {1}")]
    UnknownUri(String, String),
    /// The backend is misconfigured.
    #[error("storage configuration: {0}")]
    Config(String),
    /// Filesystem or network failure.
    #[error("storage I/O on {0}: {1}")]
    Io(String, String),
}

/// A stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `file:///abs/path/key` for local storage, `s3://bucket/key` for S3.
    pub uri: String,
    /// The key inside the storage.
    pub key: String,
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// An object store.
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// Stores `data` under `key` (replacing any object there) and returns its reference.
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<ObjectRef, StorageError>;
    /// Reads the object under `key`.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;
    /// Deletes the object under `key`; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// A URL anyone can GET the object with until `expires_in` passes (None for backends that have no URLs).
    async fn presigned_get(&self, key: &str, expires_in: Duration) -> Result<Option<String>, StorageError>;
    /// The key of a URI this storage produced (`file://…` or `s3://bucket/…`).
    fn key_of(&self, uri: &str) -> Result<String, StorageError>;
}

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// `[storage]` section of a service's config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (a directory; the embedded default) or `s3`.
    pub backend: String,
    /// Root directory of the local backend.
    pub local_root: String,
    /// The S3 backend.
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { backend: "local".into(), local_root: "vidmesh-data".into(), s3: S3Config::default() }
    }
}

impl StorageConfig {
    /// Opens the configured backend.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
        match self.backend.as_str() {
            "local" => Ok(std::sync::Arc::new(LocalStorage::new(&self.local_root)?)),
            #[cfg(feature = "s3")]
            "s3" => Ok(std::sync::Arc::new(S3Storage::new(self.s3.clone()).await?)),
            #[cfg(not(feature = "s3"))]
            "s3" => Err(StorageError::Config(
                "storage.backend = \"s3\" needs a build with S3 support (cargo feature `s3`)".into(),
            )),
            other => Err(StorageError::Config(format!("storage.backend {other:?} is not \"local\" or \"s3\""))),
        }
    }
}

impl vidmesh_runtime::config::Validate for StorageConfig {
    /// The values every backend needs (the rest is checked when the storage opens).
    fn check(&self, prefix: &str, checks: &mut vidmesh_runtime::config::Checks) {
        let backend = self.backend.as_str();
        checks
            .require(
                matches!(backend, "local" | "s3"),
                format_args!("{prefix}backend"),
                format_args!("must be \"local\" or \"s3\" (is {backend:?})"),
            )
            .require(
                backend != "local" || !self.local_root.is_empty(),
                format_args!("{prefix}local_root"),
                "must name a directory for the local backend",
            )
            .require(
                backend != "s3" || !self.s3.bucket.is_empty(),
                format_args!("{prefix}s3.bucket"),
                "must name a bucket for the s3 backend",
            );
    }
}
