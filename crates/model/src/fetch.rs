//! Bundles from object storage: `s3://bucket/prefix` is downloaded into a local cache (only `model.toml` and the
//! files of the parts a service uses, external data included), every file streamed to disk and checked against the
//! manifest's sha256 on the way; files already cached with the right hash are not downloaded again. The result is an ordinary local bundle directory.

use std::path::{Path, PathBuf};

use vidmesh_storage::S3Config;

use crate::error::ModelError;
#[cfg(feature = "s3")]
use crate::manifest::Manifest;
use crate::parts::Part;
#[cfg(feature = "s3")]
use crate::parts::sha256_file;

fn err(uri: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Mismatch(format!("fetching bundle {uri}: {e}"))
}

/// Splits `s3://bucket/prefix` into bucket and key prefix (with a trailing `/`, or empty).
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix = prefix.trim_end_matches('/');
    Some((bucket.to_string(), if prefix.is_empty() { String::new() } else { format!("{prefix}/") }))
}

/// Without the `s3` feature: an error that says so.
#[cfg(not(feature = "s3"))]
pub async fn fetch_s3(uri: &str, _: &S3Config, _: &Path, _: &[Part]) -> Result<PathBuf, ModelError> {
    Err(err(uri, "this build has no S3 support (cargo feature `s3`); use a local bundle directory"))
}

/// Downloads the bundle at `uri` into `cache` and returns the local directory.
#[cfg(feature = "s3")]
pub async fn fetch_s3(uri: &str, s3: &S3Config, cache: &Path, parts: &[Part]) -> Result<PathBuf, ModelError> {
    use vidmesh_storage::{S3Storage, Storage as _};
    let (bucket, prefix) = parse_s3_uri(uri).ok_or_else(|| err(uri, "not an s3://bucket/prefix URI"))?;
    let storage = S3Storage::new(S3Config { bucket: bucket.clone(), prefix: prefix.clone(), ..s3.clone() })
        .await
        .map_err(|e| err(uri, e))?;
    let dir = cache.join(&bucket).join(prefix.trim_end_matches('/'));
    std::fs::create_dir_all(&dir).map_err(|e| ModelError::Io { path: dir.clone(), source: e })?;
    let toml = storage.get("model.toml").await.map_err(|e| err(uri, e))?;
    let text = std::str::from_utf8(&toml).map_err(|e| err(uri, e))?;
    let manifest = Manifest::parse(text).map_err(|e| err(uri, format!("model.toml: {e}")))?;
    for (file, sha) in crate::parts::files_of(&manifest, parts) {
        let path = dir.join(&file);
        if path.exists() && sha256_file(&path).is_ok_and(|h| h.eq_ignore_ascii_case(&sha)) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::Io { path: parent.to_path_buf(), source: e })?;
        }
        // Streamed to disk and hashed on the way: a multi-GB external-data file never sits in memory.
        let actual = storage.download(&file, &path).await.map_err(|e| err(uri, e))?;
        if !actual.eq_ignore_ascii_case(&sha) {
            let _ = std::fs::remove_file(&path);
            return Err(ModelError::Checksum { path: PathBuf::from(format!("{uri}/{file}")), expected: sha, actual });
        }
    }
    // model.toml last: a directory with a manifest is complete.
    std::fs::write(dir.join("model.toml"), &toml)
        .map_err(|e| ModelError::Io { path: dir.join("model.toml"), source: e })?;
    Ok(dir)
}
