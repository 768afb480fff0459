//! Opening a bundle directory: parse + validate `model.toml`, then check the sha256 of the files a service uses.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::manifest::Manifest;

/// Why a bundle or a session could not be opened. Messages name the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bundle directory or a file in it cannot be read.
    #[error("model bundle {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `model.toml` does not parse or is inconsistent.
    #[error("model bundle {path}: model.toml: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file's sha256 differs from the manifest's.
    #[error("model bundle: {path} has sha256 {actual} but model.toml says {expected} (wrong or corrupted file)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// From model.toml.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The bundle is valid but not what the service was configured for.
    #[error("model bundle mismatch: {0}")]
    Mismatch(String),
    /// libonnxruntime could not be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    Dylib(String),
    /// ONNX Runtime refused the model or the execution provider.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
}

/// Which of the bundle's files a service needs (only those are hashed and opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The text encoder and its tokenizer (and `[text_encoder_2]`'s when the bundle has one).
    TextEncoder,
    /// The DiT (and the second transformer when the bundle has one).
    Dit,
    /// The VAE encoder (nothing when the bundle has none).
    VaeEncoder,
    /// The VAE decoder (and its step graph when stateful).
    VaeDecoder,
    /// The passive detector (nothing when the bundle has none).
    Passive,
}

/// (file, sha256) of every file the given parts use: graphs, their external data, tokenizer.
pub(crate) fn files_of(m: &Manifest, parts: &[Part]) -> Vec<(String, String)> {
    let of = |c: &crate::manifest::Component| -> Vec<(String, String)> {
        c.files().map(|(f, s)| (f.to_string(), s.to_string())).collect()
    };
    parts
        .iter()
        .flat_map(|p| match p {
            Part::TextEncoder => {
                let mut v = of(&m.text_encoder.component);
                v.push((m.text_encoder.tokenizer.clone(), m.text_encoder.tokenizer_sha256.clone()));
                if let Some(t2) = &m.text_encoder_2 {
                    v.extend(of(&t2.component));
                    v.push((t2.tokenizer.clone(), t2.tokenizer_sha256.clone()));
                }
                v
            }
            Part::Dit => m.dits().into_iter().flat_map(|(_, d)| of(&d.component)).collect(),
            Part::VaeEncoder => m.vae.encoder.iter().flat_map(of).collect(),
            Part::VaeDecoder => of(&m.vae.decoder).into_iter().chain(m.vae.decoder_step.iter().flat_map(of)).collect(),
            Part::Passive => m.passive.iter().flat_map(|p| of(&p.component)).collect(),
        })
        .collect()
}

/// A validated bundle on local disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The directory holding model.toml.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
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
