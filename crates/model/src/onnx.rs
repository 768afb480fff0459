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

use crate::bundle::Bundle;
use crate::error::ModelError;
use crate::manifest::{Component, Dim};

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

impl Onnx {
    /// Opens the bundle's component `key` and checks the graph against what the manifest declares: every declared
    /// input and output exists under that name, the graph has no input the manifest does not declare (nothing
    /// would feed it), and every axis the manifest calls dynamic is dynamic in the graph. A mismatch refuses the
    /// bundle at start-up with the key, the name and what the graph really has.
    pub fn checked_session(&self, bundle: &Bundle, key: &str, c: &Component) -> Result<Session, ModelError> {
        let session = self.session(&bundle.path(&c.file))?;
        check_graph(&session, key, c).map_err(|m| ModelError::Mismatch(format!("{key} ({}): {m}", c.file)))?;
        Ok(session)
    }
}

/// The graph's shape of an outlet (`-1` = dynamic), when it is a tensor.
fn dims(o: &ort::value::Outlet) -> Option<Vec<i64>> {
    match o.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
        _ => None,
    }
}

fn check_graph(s: &Session, key: &str, c: &Component) -> Result<(), String> {
    let names = |outlets: &[ort::value::Outlet]| outlets.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
    let (inputs, outputs) = (names(s.inputs()), names(s.outputs()));
    for io in &c.inputs {
        let Some(o) = s.inputs().iter().find(|o| o.name() == io.name) else {
            return Err(format!("{key}.inputs names {:?} but the graph's inputs are {inputs:?}", io.name));
        };
        if let Some(d) = dims(o) {
            if d.len() != io.shape.len() {
                return Err(format!(
                    "input {:?} has rank {} in the graph, {} in the manifest",
                    io.name,
                    d.len(),
                    io.shape.len()
                ));
            }
            for (axis, (g, m)) in d.iter().zip(&io.shape).enumerate() {
                match m {
                    Dim::Named(n) if *g >= 0 => {
                        return Err(format!(
                            "input {:?} axis {axis} ({n}) is fixed to {g} in the graph but the manifest declares it \
                             dynamic (re-export with that axis dynamic)",
                            io.name
                        ));
                    }
                    Dim::Fixed(f) if *g >= 0 && *g as u64 != *f => {
                        return Err(format!(
                            "input {:?} axis {axis} is {g} in the graph, {f} in the manifest",
                            io.name
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(extra) = inputs.iter().find(|n| !c.inputs.iter().any(|io| &io.name == *n)) {
        return Err(format!("the graph has an input {extra:?} that {key}.inputs does not declare"));
    }
    if let Some(io) = c.outputs.iter().find(|io| !outputs.contains(&io.name)) {
        return Err(format!("{key}.outputs names {:?} but the graph's outputs are {outputs:?}", io.name));
    }
    Ok(())
}
