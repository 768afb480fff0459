//! Opening a bundle directory: parse + validate `model.toml`, then check the sha256 of the files a service uses.

use std::path::{Path, PathBuf};

use crate::error::ModelError;
use crate::manifest::Manifest;
use crate::parts::{Part, files_of, sha256_file};

/// A validated bundle on local disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The directory holding model.toml.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl Bundle {
    /// Parses and validates `dir/model.toml` without touching the other files.
    pub fn manifest_only(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let manifest =
            Manifest::parse(&text).map_err(|message| ModelError::Manifest { path: path.clone(), message })?;
        manifest.validate().map_err(|message| ModelError::Manifest { path, message })?;
        Ok(Self { dir: dir.to_path_buf(), manifest })
    }

    /// Opens the bundle at `dir` and verifies the sha256 of every file in `parts`.
    pub fn open(dir: &Path, parts: &[Part]) -> Result<Self, ModelError> {
        let bundle = Self::manifest_only(dir)?;
        for (file, sha) in bundle.files(parts) {
            let path = dir.join(&file);
            let actual = sha256_file(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
            if !actual.eq_ignore_ascii_case(&sha) {
                return Err(ModelError::Checksum { path, expected: sha, actual });
            }
        }
        Ok(bundle)
    }

    fn files(&self, parts: &[Part]) -> Vec<(String, String)> {
        files_of(&self.manifest, parts)
    }

    /// Absolute path of a file named in the manifest.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Refuses the bundle unless its name is `expected` (when the service's config names one).
    pub fn expect_name(&self, expected: &str) -> Result<(), ModelError> {
        if !expected.is_empty() && self.manifest.model.name != expected {
            return Err(ModelError::Mismatch(format!(
                "config expects model {expected:?} but {} holds {:?}",
                self.dir.display(),
                self.manifest.model.name
            )));
        }
        Ok(())
    }
}

/// The `[model]` section every serving stage shares: which bundle it serves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Bundle: a directory holding model.toml, or `s3://bucket/prefix` (downloaded into `cache_dir`).
    pub bundle: String,
    /// Expected model name; empty = whatever the bundle holds. A different name refuses to start.
    pub name: String,
    /// Where `s3://` bundles are downloaded (an emptyDir or a node-local volume in Kubernetes).
    pub cache_dir: String,
    /// Endpoint, region and credentials for `s3://` bundles (the bucket comes from the URI).
    pub s3: vidmesh_storage::S3Config,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            bundle: "models/vidmesh-tiny".into(),
            name: String::new(),
            cache_dir: std::env::temp_dir().join("vidmesh-bundles").display().to_string(),
            s3: vidmesh_storage::S3Config::default(),
        }
    }
}

impl ModelConfig {
    /// Opens the configured bundle (downloading it first when it is an `s3://` URI), verifying `parts`, and checks
    /// its name. Blocking; callable from any thread, async context included (the download runs on a thread and
    /// runtime of its own).
    pub fn open(&self, parts: &[Part]) -> Result<Bundle, ModelError> {
        let dir = if self.bundle.starts_with("s3://") {
            let (uri, s3, cache) = (self.bundle.clone(), self.s3.clone(), PathBuf::from(&self.cache_dir));
            let parts = parts.to_vec();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ModelError::Mismatch(format!("runtime for the bundle download: {e}")))?
                    .block_on(crate::fetch::fetch_s3(&uri, &s3, &cache, &parts))
            })
            .join()
            .map_err(|_| ModelError::Mismatch("bundle download thread panicked".into()))??
        } else {
            PathBuf::from(&self.bundle)
        };
        let bundle = Bundle::open(&dir, parts)?;
        bundle.expect_name(&self.name)?;
        Ok(bundle)
    }
}
