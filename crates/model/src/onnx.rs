//! ONNX Runtime: the library is loaded dynamically (once per process) from `dylib_path` or `ORT_DYLIB_PATH`,
//! fetched by scripts/fetch-onnxruntime.sh; sessions are built with the configured execution provider.
//!
//! Invariant: with `execution_provider = "cuda"`, registration failure is an error — a session never silently
//! runs on the CPU when the operator asked for the GPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use serde::{Deserialize, Serialize};

use crate::bundle::ModelError;

/// Where sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs the onnxruntime-gpu library: `scripts/fetch-onnxruntime.sh --gpu`).
    Cuda,
}

/// `[onnxruntime]` section of a service's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnnxConfig {
    /// Path of libonnxruntime.so; empty = the `ORT_DYLIB_PATH` environment variable.
    pub dylib_path: String,
    /// `cpu` or `cuda`.
    pub execution_provider: ExecutionProvider,
    /// CUDA device ordinal.
    pub device_id: i32,
    /// Threads inside one operator (0 = ONNX Runtime's default: one per core).
    pub intra_threads: usize,
}

impl Default for OnnxConfig {
    fn default() -> Self {
        Self { dylib_path: String::new(), execution_provider: ExecutionProvider::Cpu, device_id: 0, intra_threads: 0 }
    }
}

/// A loaded ONNX Runtime and the session options every session of this process shares.
#[derive(Clone)]
pub struct Onnx {
    env: ort::environment::Environment,
    config: OnnxConfig,
}

/// ONNX Runtime allows one environment per process: the first `init` creates it, later ones share it.
static ENV: std::sync::Mutex<Option<(PathBuf, ort::environment::Environment)>> = std::sync::Mutex::new(None);

fn resolve_dylib(config: &OnnxConfig, env: &HashMap<String, String>) -> Result<PathBuf, ModelError> {
    let path = if !config.dylib_path.is_empty() {
        PathBuf::from(&config.dylib_path)
    } else if let Some(p) = env.get("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else {
        return Err(ModelError::Dylib(
            "no library configured: set ORT_DYLIB_PATH or [onnxruntime] dylib_path to libonnxruntime.so \
             (scripts/fetch-onnxruntime.sh downloads it and prints the path)"
                .into(),
        ));
    };
    if !path.is_file() {
        return Err(ModelError::Dylib(format!(
            "{} does not exist (run scripts/fetch-onnxruntime.sh and point ORT_DYLIB_PATH at what it prints)",
            path.display()
        )));
    }
    Ok(path)
}

impl Onnx {
    /// Loads libonnxruntime (first call in the process; later calls reuse it) and creates an environment.
    /// `env` is the process environment, consulted for `ORT_DYLIB_PATH`.
    pub fn init(config: &OnnxConfig, env: &HashMap<String, String>) -> Result<Self, ModelError> {
        let path = resolve_dylib(config, env)?;
        let mut global = ENV.lock().map_err(|_| ModelError::Ort("environment lock poisoned".into()))?;
        if let Some((first, env)) = global.as_ref() {
            if *first != path {
                tracing::warn!("ONNX Runtime already loaded from {}; ignoring {}", first.display(), path.display());
            }
            return Ok(Self { env: env.clone(), config: config.clone() });
        }
        let builder = ort::init_from(&path).map_err(|e| ModelError::Dylib(e.to_string()))?;
        let env = builder.with_name("vidmesh").build().map_err(|e| ModelError::Ort(e.to_string()))?;
        *global = Some((path, env.clone()));
        Ok(Self { env, config: config.clone() })
    }

    /// The configured execution provider.
    pub fn provider(&self) -> ExecutionProvider {
        self.config.execution_provider
    }

    /// The configured CUDA device ordinal.
    pub fn device_id(&self) -> i32 {
        self.config.device_id
    }

    /// Session options every session of this process uses: full graph optimisation, the configured threads and
    /// execution provider (CUDA registered with error-on-failure). `what` names the model in errors.
    pub fn builder(&self, what: &str) -> Result<ort::session::builder::SessionBuilder, ModelError> {
        let ort_err = |e: ort::Error| ModelError::Ort(format!("{what}: {e}"));
        let mut builder = Session::builder(&self.env)
            .map_err(ort_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ort_err(e.into()))?;
        if self.config.intra_threads > 0 {
            builder = builder.with_intra_threads(self.config.intra_threads).map_err(|e| ort_err(e.into()))?;
        }
        if self.config.execution_provider == ExecutionProvider::Cuda {
            let cuda = ort::ep::CUDA::default().with_device_id(self.config.device_id).build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                ModelError::Ort(format!(
                    "execution_provider = \"cuda\" but CUDA could not be registered for {what} ({e}); use the GPU \
                     build of ONNX Runtime (scripts/fetch-onnxruntime.sh --gpu) on a machine with an NVIDIA GPU, or \
                     set execution_provider = \"cpu\""
                ))
            })?;
        }
        Ok(builder)
    }

    /// Opens an ONNX file as a session with full graph optimisation on the configured provider.
    pub fn session(&self, file: &Path) -> Result<Session, ModelError> {
        let what = file.display().to_string();
        self.builder(&what)?.commit_from_file(file).map_err(|e| ModelError::Ort(format!("{what}: {e}")))
    }
}
