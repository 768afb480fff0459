//! The model crate's one error: why a bundle or a session could not be opened.

use std::path::PathBuf;

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
