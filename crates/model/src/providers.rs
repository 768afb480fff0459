//! Execution providers: which one sessions run on, TensorRT's options, and how a provider is registered.
//!
//! Invariants:
//! - A GPU provider (`cuda`, `tensorrt`) is registered with error-on-failure: when ONNX Runtime cannot register it
//!   the session is not created, and the error names `onnxruntime.execution_provider` and what to do. A session
//!   never silently runs on the CPU when the GPU was asked for.
//! - `tensorrt` registers TensorRT first and CUDA after it, on the same device and also with error-on-failure:
//!   TensorRT takes the subgraphs it supports, CUDA the other nodes (and ONNX Runtime's CPU provider, as with CUDA
//!   alone, only nodes neither has a kernel for).
//! - CUDA graphs are enabled only on sessions built for capture (`Onnx::captured_builder`): on the CUDA provider
//!   with `cuda`, on the TensorRT provider (not its CUDA fallback) with `tensorrt`.
//! - TensorRT's engine and timing caches live in a subdirectory of `engine_cache_dir` named by [`cache_key`]:
//!   the ONNX Runtime build, the TensorRT library version and the GPU models, as far as they can be read when the
//!   library is loaded. ONNX Runtime's own cache file names add the model's graph hash, the precision and the GPU's
//!   compute capability (`…_fp16_sm90.engine`), so a cache built by another ONNX Runtime, TensorRT or GPU is never
//!   read back: it sits in another directory.

use std::path::Path;

use ort::session::builder::SessionBuilder;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Where sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs the onnxruntime-gpu library: `scripts/fetch-onnxruntime.sh --gpu`).
    Cuda,
    /// NVIDIA TensorRT, with CUDA for the nodes TensorRT does not take (needs the onnxruntime-gpu library, which
    /// holds ONNX Runtime's TensorRT provider, and TensorRT's own libraries on the loader's path).
    Tensorrt,
}

impl ExecutionProvider {
    /// The value as the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
        }
    }

    /// Whether sessions run on an NVIDIA GPU (device tensors are CUDA memory).
    pub fn is_gpu(self) -> bool {
        self != Self::Cpu
    }
}

/// `[onnxruntime.tensorrt]`: TensorRT's options, used only with `execution_provider = "tensorrt"` (setting any of
/// them with another provider is refused when the config loads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TensorRtConfig {
    /// Absolute directory for TensorRT's engine cache (empty: no cache, every start builds its engines, minutes for
    /// a DiT). Sessions use its subdirectory named by the ONNX Runtime build, the TensorRT version and the GPU
    /// models (see `docs/operations.md`, "GPU: CUDA graphs and TensorRT"); it is created when missing.
    pub engine_cache_dir: String,
    /// Let TensorRT pick fp16 kernels where they are faster (graph inputs and outputs keep their types).
    pub fp16: bool,
    /// Keep TensorRT's timing cache (kernel timings reused by later engine builds) beside the engines; needs
    /// `engine_cache_dir`.
    pub timing_cache: bool,
    /// Most workspace memory TensorRT may use, in MiB (0: TensorRT's default, up to the device's memory).
    pub max_workspace_mib: u64,
    /// Optimisation profile, smallest shapes: `name:1x16x5x32x32,name2:1x512x4096`, every dynamic input named.
    /// Without a profile TensorRT builds for the first shapes it sees and rebuilds when a larger one comes; set
    /// all three (`profile_min_shapes`, `profile_opt_shapes`, `profile_max_shapes`) or none.
    pub profile_min_shapes: String,
    /// Optimisation profile, the shapes TensorRT tunes for (same inputs and ranks as `profile_min_shapes`).
    pub profile_opt_shapes: String,
    /// Optimisation profile, largest shapes (same inputs and ranks as `profile_min_shapes`).
    pub profile_max_shapes: String,
}

/// Largest `max_workspace_mib` accepted (1 TiB: above any GPU's memory, below an overflow).
const MAX_WORKSPACE_MIB: u64 = 1 << 20;

/// One profile's shapes: `(input name, dims)` in the order written.
type Profile = Vec<(String, Vec<i64>)>;

/// Parses `name:AxBxC,name2:D` (ONNX Runtime's `trt_profile_*_shapes` syntax).
fn parse_profile(s: &str) -> Result<Profile, String> {
    s.split(',')
        .map(|entry| {
            let (name, dims) = entry.trim().rsplit_once(':').ok_or_else(|| format!("{entry:?} is not name:dims"))?;
            let dims = dims
                .split('x')
                .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d >= 1))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("{entry:?}: dims must be positive integers joined by x, as 1x16x5x32x32"))?;
            if name.trim().is_empty() {
                return Err(format!("{entry:?} has no input name"));
            }
            Ok((name.trim().to_string(), dims))
        })
        .collect()
}

impl TensorRtConfig {
    /// The names of the fields set to something other than their default.
    pub fn set_keys(&self) -> Vec<&'static str> {
        let d = Self::default();
        [
            ("engine_cache_dir", self.engine_cache_dir != d.engine_cache_dir),
            ("fp16", self.fp16 != d.fp16),
            ("timing_cache", self.timing_cache != d.timing_cache),
            ("max_workspace_mib", self.max_workspace_mib != d.max_workspace_mib),
            ("profile_min_shapes", self.profile_min_shapes != d.profile_min_shapes),
            ("profile_opt_shapes", self.profile_opt_shapes != d.profile_opt_shapes),
            ("profile_max_shapes", self.profile_max_shapes != d.profile_max_shapes),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// Reports each problem as `(key, problem)`; `p` is this section's key with its trailing dot.
    pub fn check(&self, p: &str, report: &mut dyn FnMut(String, String)) {
        if !self.engine_cache_dir.is_empty() && !Path::new(&self.engine_cache_dir).is_absolute() {
            report(
                format!("{p}engine_cache_dir"),
                format!("must be an absolute path (is {:?})", self.engine_cache_dir),
            );
        }
        if self.timing_cache && self.engine_cache_dir.is_empty() {
            report(
                format!("{p}timing_cache"),
                format!("true needs {p}engine_cache_dir (the timing cache is kept beside the engines)"),
            );
        }
        if self.max_workspace_mib > MAX_WORKSPACE_MIB {
            report(
                format!("{p}max_workspace_mib"),
                format!("must be at most {MAX_WORKSPACE_MIB} (is {})", self.max_workspace_mib),
            );
        }
        let shapes = [
            ("profile_min_shapes", &self.profile_min_shapes),
            ("profile_opt_shapes", &self.profile_opt_shapes),
            ("profile_max_shapes", &self.profile_max_shapes),
        ];
        let given = shapes.iter().filter(|(_, s)| !s.is_empty()).count();
        if given == 0 {
            return;
        }
        if given < 3 {
            for (k, _) in shapes.iter().filter(|(_, s)| s.is_empty()) {
                report(format!("{p}{k}"), "must be set with the other two profile_*_shapes (all three or none)".into());
            }
            return;
        }
        let mut parsed = Vec::new();
        for (k, s) in shapes {
            match parse_profile(s) {
                Ok(v) => parsed.push((k, v)),
                Err(e) => report(format!("{p}{k}"), e),
            }
        }
        let [(_, min), (_, opt), (_, max)] = parsed.as_slice() else { return };
        for (k, other, lo) in [("profile_opt_shapes", opt, min), ("profile_max_shapes", max, opt)] {
            let names = |v: &Profile| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            if names(other) != names(min) {
                let (a, b) = (names(other), names(min));
                report(format!("{p}{k}"), format!("names inputs {a:?} but profile_min_shapes names {b:?}"));
                continue;
            }
            for ((name, dims), (_, lower)) in other.iter().zip(lo) {
                if dims.len() != lower.len() || dims.iter().zip(lower).any(|(d, l)| d < l) {
                    report(
                        format!("{p}{k}"),
                        format!("{name}: {dims:?} must have the rank of, and be at least, {lower:?}"),
                    );
                }
            }
        }
    }
}

/// The ONNX Runtime build as [`ort::info`] describes it: `git-branch` and `git-commit-id`, else the whole string.
fn ort_build(info: &str) -> String {
    let field = |k: &str| info.split([',', ' ']).find_map(|f| f.trim().strip_prefix(k)).map(str::to_string);
    match (field("git-branch="), field("git-commit-id=")) {
        (Some(b), Some(c)) => format!("{b}-{c}"),
        _ => info.to_string(),
    }
}

/// TensorRT's version as the loader would find it: the longest `libnvinfer.so.<version>` in the first directory of
/// `ld_library_path` (then the system's library directories) that has one.
pub fn tensorrt_version(ld_library_path: &str) -> Option<String> {
    let system = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/lib", "/usr/lib"];
    ld_library_path.split(':').filter(|d| !d.is_empty()).chain(system).find_map(|dir| {
        let entries = std::fs::read_dir(dir).ok()?;
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("libnvinfer.so.").map(str::to_string))
            .max_by_key(|v| (v.split('.').count(), v.clone()))
    })
}

/// The distinct GPU models the NVIDIA driver lists under `<proc>/driver/nvidia/gpus/*/information` (`Model:`).
pub fn gpu_models(proc: &Path) -> Vec<String> {
    let Ok(gpus) = std::fs::read_dir(proc.join("driver/nvidia/gpus")) else { return Vec::new() };
    let mut models: Vec<String> = gpus
        .filter_map(|g| std::fs::read_to_string(g.ok()?.path().join("information")).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string())))
        .collect();
    models.sort();
    models.dedup();
    models
}

/// The engine cache subdirectory for this ONNX Runtime build (`ort_info`: [`ort::info`]), TensorRT version and GPU
/// models: `ort-<branch>-<commit>_trt-<version>_<model>[+<model>…]`, with `unknown` for what could not be read and
/// every character outside `[A-Za-z0-9._-]` replaced by `-`.
pub fn cache_key(ort_info: &str, tensorrt: Option<&str>, gpus: &[String]) -> String {
    let gpus = if gpus.is_empty() { "gpu-unknown".to_string() } else { gpus.join("+") };
    let key = format!("ort-{}_trt-{}_{gpus}", ort_build(ort_info), tensorrt.unwrap_or("unknown"));
    key.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect()
}

/// The TensorRT provider with `t`'s options on `device`; `cache`: the keyed engine cache directory.
fn tensorrt(t: &TensorRtConfig, device: i32, graphs: bool, cache: Option<&Path>) -> ort::ep::TensorRT {
    let mut trt = ort::ep::TensorRT::default().with_device_id(device).with_fp16(t.fp16);
    if t.max_workspace_mib > 0 {
        trt = trt.with_max_workspace_size((t.max_workspace_mib as usize) << 20);
    }
    if let Some(dir) = cache {
        let dir = dir.display().to_string();
        trt = trt.with_engine_cache(true).with_engine_cache_path(&dir);
        if t.timing_cache {
            trt = trt.with_timing_cache(true).with_timing_cache_path(&dir);
        }
    }
    if !t.profile_min_shapes.is_empty() {
        trt = trt
            .with_profile_min_shapes(&t.profile_min_shapes)
            .with_profile_opt_shapes(&t.profile_opt_shapes)
            .with_profile_max_shapes(&t.profile_max_shapes);
    }
    if graphs { trt.with_cuda_graph(true) } else { trt }
}

/// What an operator reads when `provider` could not be registered for `what` (ONNX Runtime said `cause`).
fn refusal(provider: ExecutionProvider, what: &str, cause: &str) -> String {
    let remedy = match provider {
        ExecutionProvider::Tensorrt => {
            "TensorRT needs the GPU build of ONNX Runtime (scripts/fetch-onnxruntime.sh --gpu: it holds \
             libonnxruntime_providers_tensorrt.so), TensorRT's libnvinfer on LD_LIBRARY_PATH and an NVIDIA GPU; \
             or set onnxruntime.execution_provider = \"cuda\" (or \"cpu\")"
        }
        _ => {
            "use the GPU build of ONNX Runtime (scripts/fetch-onnxruntime.sh --gpu) on a machine with an NVIDIA \
             GPU, or set onnxruntime.execution_provider = \"cpu\""
        }
    };
    let name = provider.name();
    let cause = cause.trim_end();
    format!("onnxruntime.execution_provider = {name:?} but it could not be registered for {what} ({cause}); {remedy}")
}

/// Registers `provider` on `builder` (nothing for the CPU), with error-on-failure; `graphs` enables CUDA graphs,
/// `cache` is TensorRT's keyed engine cache directory. `what` names the model in errors.
pub(crate) fn register(
    builder: SessionBuilder,
    (provider, device, trt): (ExecutionProvider, i32, &TensorRtConfig),
    graphs: bool,
    cache: Option<&Path>,
    what: &str,
) -> Result<SessionBuilder, ModelError> {
    let cuda = ort::ep::CUDA::default().with_device_id(device);
    let eps = match provider {
        ExecutionProvider::Cpu => return Ok(builder),
        ExecutionProvider::Cuda => {
            vec![if graphs { cuda.with_cuda_graph(true) } else { cuda }.build().error_on_failure()]
        }
        ExecutionProvider::Tensorrt => {
            vec![tensorrt(trt, device, graphs, cache).build().error_on_failure(), cuda.build().error_on_failure()]
        }
    };
    builder.with_execution_providers(eps).map_err(|e| ModelError::Ort(refusal(provider, what, &e.to_string())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cache_keys_differ_by_onnxruntime_tensorrt_and_gpu_and_name_what_is_unknown() {
        let info = "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=0123abc, build type=Release";
        let h100 = vec!["NVIDIA H100 80GB HBM3".to_string()];
        let key = cache_key(info, Some("10.9.0"), &h100);
        assert_eq!(key, "ort-rel-1.31.1-0123abc_trt-10.9.0_NVIDIA-H100-80GB-HBM3");
        let others = [
            cache_key("ORT Build Info: git-branch=rel-1.32.0, git-commit-id=9", Some("10.9.0"), &h100),
            cache_key(info, Some("10.14.1"), &h100),
            cache_key(info, Some("10.9.0"), &["NVIDIA H200".to_string()]),
        ];
        assert!(others.iter().all(|k| *k != key), "{others:?}");
        assert_eq!(cache_key(info, None, &[]), "ort-rel-1.31.1-0123abc_trt-unknown_gpu-unknown");
    }

    #[test]
    fn tensorrt_and_gpu_models_are_read_from_the_loader_path_and_the_driver() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, libs) = (dir.path().join("empty"), dir.path().join("libs"));
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&libs).unwrap();
        for f in ["libnvinfer.so.10", "libnvinfer.so.10.9.0", "libnvinfer_plugin.so.10.9.0"] {
            std::fs::write(libs.join(f), b"").unwrap();
        }
        let path = format!("{}:{}", empty.display(), libs.display());
        assert_eq!(tensorrt_version(&path).as_deref(), Some("10.9.0"));
        let proc = dir.path().join("proc");
        for (bus, model) in [("0000:01:00.0", "NVIDIA H100 80GB HBM3"), ("0000:02:00.0", "NVIDIA H100 80GB HBM3")] {
            let d = proc.join("driver/nvidia/gpus").join(bus);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("information"), format!("Model: \t\t {model}\nIRQ:   \t\t 42\n")).unwrap();
        }
        assert_eq!(gpu_models(&proc), vec!["NVIDIA H100 80GB HBM3".to_string()]);
        assert!(gpu_models(&empty).is_empty());
    }

    #[test]
    fn profiles_parse_as_onnxruntime_writes_them() {
        let p = parse_profile("latents:1x16x5x32x32, text_states:1x512x4096").unwrap();
        assert_eq!(p[0], ("latents".to_string(), vec![1, 16, 5, 32, 32]));
        assert_eq!(p[1].1, vec![1, 512, 4096]);
        assert!(parse_profile("latents:1x0").is_err());
        assert!(parse_profile("latents").is_err());
        assert!(parse_profile(":1x2").is_err());
    }
}
