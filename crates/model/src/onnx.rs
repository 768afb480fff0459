//! ONNX Runtime: the library is loaded dynamically (once per process) from `dylib_path` or `ORT_DYLIB_PATH`,
//! fetched by scripts/fetch-onnxruntime.sh; sessions are built with the configured execution provider
//! (crate::providers registers it).
//!
//! Invariants:
//! - With `execution_provider = "cuda"` or `"tensorrt"`, registration failure is an error naming the key and what
//!   to do: a session never silently runs on the CPU when the operator asked for the GPU.
//! - A config that passed [`OnnxConfig::validate`] holds together: `cuda_graph` only with a GPU provider (and only
//!   in a service that captures graphs), `[onnxruntime.tensorrt]` only with `tensorrt`; nothing is clamped later.
//! - CUDA graphs are enabled only on [`Onnx::captured_builder`]'s sessions, which their caller runs only through
//!   fixed-address IO binding with one `gpu_graph_id` per input shape; every other session is built without them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::error::ModelError;
use crate::manifest::{Component, Dim};
pub use crate::providers::ExecutionProvider;
use crate::providers::{self, TensorRtConfig};

/// `[onnxruntime]` section of a service's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnnxConfig {
    /// Path of libonnxruntime.so; empty = the `ORT_DYLIB_PATH` environment variable.
    pub dylib_path: String,
    /// `cpu`, `cuda` or `tensorrt` (TensorRT with CUDA for the nodes TensorRT does not take).
    pub execution_provider: ExecutionProvider,
    /// CUDA device ordinal (also TensorRT's).
    pub device_id: i32,
    /// Threads of the process's one intra-op pool, which every session shares (0 = ONNX Runtime's default: one
    /// per core). The first config of a process sets it.
    pub intra_threads: usize,
    /// ONNX Runtime CUDA graphs for the sessions a service runs through fixed-address IO binding (the denoiser's
    /// device-resident loop, one graph per shape bucket): needs `cuda` or `tensorrt`; refused by services that
    /// have no such loop.
    pub cuda_graph: bool,
    /// TensorRT's options (`execution_provider = "tensorrt"` only).
    pub tensorrt: TensorRtConfig,
}

impl Default for OnnxConfig {
    fn default() -> Self {
        Self {
            dylib_path: String::new(),
            execution_provider: ExecutionProvider::Cpu,
            device_id: 0,
            intra_threads: 0,
            cuda_graph: false,
            tensorrt: TensorRtConfig::default(),
        }
    }
}

impl OnnxConfig {
    /// Checks the section for a service that runs no session through CUDA graphs: what
    /// [`OnnxConfig::validate_with_graphs`] checks, and `cuda_graph` must be false. `section` is the section's key
    /// with its trailing dot (`"onnxruntime."`); `report(key, problem)` receives each problem.
    pub fn validate(&self, section: &str, mut report: impl FnMut(String, String)) {
        if self.cuda_graph {
            report(
                format!("{section}cuda_graph"),
                "only the denoiser's device-resident loop runs sessions through CUDA graphs; this service has none \
                 (set it to false)"
                    .into(),
            );
        }
        self.validate_with_graphs(section, report);
    }

    /// Checks the section for a service that captures CUDA graphs (the denoiser): `device_id` is not negative,
    /// `cuda_graph` needs a GPU provider, `[onnxruntime.tensorrt]` keys are set only with `tensorrt` and hold
    /// together (absolute cache directory, timing cache beside it, workspace, complete and ordered profiles).
    pub fn validate_with_graphs(&self, section: &str, mut report: impl FnMut(String, String)) {
        let provider = self.execution_provider;
        if self.device_id < 0 {
            report(format!("{section}device_id"), format!("must be at least 0 (is {})", self.device_id));
        }
        if self.cuda_graph && !provider.is_gpu() {
            report(
                format!("{section}cuda_graph"),
                format!(
                    "true needs {section}execution_provider = \"cuda\" or \"tensorrt\" (it is {:?})",
                    provider.name()
                ),
            );
        }
        if provider != ExecutionProvider::Tensorrt {
            for key in self.tensorrt.set_keys() {
                report(
                    format!("{section}tensorrt.{key}"),
                    format!(
                        "is set but {section}execution_provider is {:?}: TensorRT's options apply only with \
                         \"tensorrt\"",
                        provider.name()
                    ),
                );
            }
        }
        self.tensorrt.check(&format!("{section}tensorrt."), &mut report);
    }
}

/// A loaded ONNX Runtime and the session options every session of this process shares.
#[derive(Clone)]
pub struct Onnx {
    env: ort::environment::Environment,
    config: OnnxConfig,
    /// TensorRT's keyed engine cache directory (`tensorrt` with `engine_cache_dir` only).
    trt_cache: Option<PathBuf>,
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
    /// `env` is the process environment, consulted for `ORT_DYLIB_PATH` (and, with TensorRT's engine cache,
    /// `LD_LIBRARY_PATH` to read TensorRT's version for the cache key).
    pub fn init(config: &OnnxConfig, env: &HashMap<String, String>) -> Result<Self, ModelError> {
        let path = resolve_dylib(config, env)?;
        let mut global = ENV.lock().map_err(|_| ModelError::Ort("environment lock poisoned".into()))?;
        let ort_env = match global.as_ref() {
            Some((first, ort_env)) => {
                if *first != path {
                    tracing::warn!("ONNX Runtime already loaded from {}; ignoring {}", first.display(), path.display());
                }
                ort_env.clone()
            }
            None => {
                let builder = ort::init_from(&path).map_err(|e| ModelError::Dylib(e.to_string()))?;
                // One intra-op thread pool for every session of the process: sessions that run one after another
                // (the split DiT's three graphs each step, the engines of `vidmesh generate`) never leave one pool's
                // spinning threads competing with the next's (which halved the split DiT's speed on 2 cores).
                let pool = ort::environment::GlobalThreadPoolOptions::default()
                    .with_intra_threads(config.intra_threads)
                    .map_err(|e| ModelError::Ort(e.to_string()))?;
                let ort_env = builder
                    .with_name("vidmesh")
                    .with_global_thread_pool(pool)
                    .build()
                    .map_err(|e| ModelError::Ort(e.to_string()))?;
                *global = Some((path, ort_env.clone()));
                ort_env
            }
        };
        let trt = &config.tensorrt;
        let trt_cache = (config.execution_provider == ExecutionProvider::Tensorrt && !trt.engine_cache_dir.is_empty())
            .then(|| {
                let ld = env.get("LD_LIBRARY_PATH").map_or("", String::as_str);
                let key = providers::cache_key(
                    ort::info(),
                    providers::tensorrt_version(ld).as_deref(),
                    &providers::gpu_models(Path::new("/proc")),
                );
                PathBuf::from(&trt.engine_cache_dir).join(key)
            });
        Ok(Self { env: ort_env, config: config.clone(), trt_cache })
    }

    /// The configured execution provider.
    pub fn provider(&self) -> ExecutionProvider {
        self.config.execution_provider
    }

    /// The configured CUDA device ordinal.
    pub fn device_id(&self) -> i32 {
        self.config.device_id
    }

    /// Whether `cuda_graph` is on: [`Onnx::captured_builder`]'s sessions capture CUDA graphs.
    pub fn cuda_graph(&self) -> bool {
        self.config.cuda_graph
    }

    /// TensorRT's engine cache directory for this ONNX Runtime, TensorRT and GPU (`engine_cache_dir` joined with
    /// the key), when TensorRT caches engines.
    pub fn engine_cache_dir(&self) -> Option<&Path> {
        self.trt_cache.as_deref()
    }

    /// Session options every session of this process uses: full graph optimisation, the configured threads and
    /// execution provider (registered with error-on-failure), without CUDA graphs. `what` names the model in
    /// errors.
    pub fn builder(&self, what: &str) -> Result<ort::session::builder::SessionBuilder, ModelError> {
        self.builder_with(what, false)
    }

    /// As [`Onnx::builder`], with CUDA graphs when `cuda_graph` is on. Only for a session its caller runs
    /// exclusively through IO binding whose device addresses stay fixed per input shape, with one `gpu_graph_id`
    /// run option per shape (ids from 1): any other run of such a session replays a graph captured for other
    /// inputs.
    pub fn captured_builder(&self, what: &str) -> Result<ort::session::builder::SessionBuilder, ModelError> {
        self.builder_with(what, self.config.cuda_graph)
    }

    fn builder_with(&self, what: &str, graphs: bool) -> Result<ort::session::builder::SessionBuilder, ModelError> {
        let ort_err = |e: ort::Error| ModelError::Ort(format!("{what}: {e}"));
        // Threads come from the environment's global pool (`Onnx::init`).
        let builder = Session::builder(&self.env)
            .map_err(ort_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ort_err(e.into()))?;
        let c = &self.config;
        let provider = (c.execution_provider, c.device_id, &c.tensorrt);
        let builder = providers::register(builder, provider, graphs, self.trt_cache.as_deref(), what)?;
        if let Some(dir) = &self.trt_cache {
            std::fs::create_dir_all(dir).map_err(|e| {
                ModelError::Ort(format!(
                    "onnxruntime.tensorrt.engine_cache_dir: cannot create {} for {what}: {e}",
                    dir.display()
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

    /// As [`Onnx::session`], built with [`Onnx::captured_builder`] (CUDA graphs when `cuda_graph` is on).
    pub fn captured_session(&self, file: &Path) -> Result<Session, ModelError> {
        let what = file.display().to_string();
        self.captured_builder(&what)?.commit_from_file(file).map_err(|e| ModelError::Ort(format!("{what}: {e}")))
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

    /// As [`Onnx::checked_session`], built with [`Onnx::captured_builder`] (CUDA graphs when `cuda_graph` is on).
    pub fn checked_captured_session(&self, bundle: &Bundle, key: &str, c: &Component) -> Result<Session, ModelError> {
        let session = self.captured_session(&bundle.path(&c.file))?;
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
