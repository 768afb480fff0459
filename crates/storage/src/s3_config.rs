//! `[storage.s3]`: part of every config schema, whether or not this build has S3 support (feature `s3`).

use serde::{Deserialize, Serialize};

/// `[storage.s3]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (`garage` for Garage, e.g. `eu-west-1` for AWS).
    pub region: String,
    /// Endpoint URL of an S3-compatible server (e.g. `http://garage:3900`); empty = AWS.
    pub endpoint: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    /// Access key id; empty = the AWS default chain (environment, web identity / IRSA, instance profile).
    pub access_key_id: String,
    /// Secret access key (from a Kubernetes Secret in production); empty with `access_key_id` empty.
    pub secret_access_key: String,
    /// Prefix prepended to every key (e.g. `vidmesh/`), so one bucket can serve several deployments.
    pub prefix: String,
    /// Objects of at least this many bytes use multipart upload.
    pub multipart_threshold: usize,
    /// Part size of multipart uploads (S3 requires at least 5 MiB for all parts but the last).
    pub part_size: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            force_path_style: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: String::new(),
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
        }
    }
}
