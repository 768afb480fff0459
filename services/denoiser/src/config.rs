//! denoiser configuration: defaults → file → `VIDMESH__…` environment (see vidmesh_runtime::config).

use serde::{Deserialize, Serialize};
use vidmesh_model::{ModelConfig, OnnxConfig};
use vidmesh_runtime::config::{Checks, Validate};
use vidmesh_runtime::{ServerConfig, TelemetryConfig};

/// The whole service configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses and drain.
    pub server: ServerConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// ONNX Runtime library and execution provider.
    pub onnxruntime: OnnxConfig,
    /// Which bundle to serve.
    pub model: ModelConfig,
    /// Step-level batching and admission.
    pub batching: BatchingConfig,
    /// Most scheduler steps a request may ask for.
    pub max_steps: u32,
    /// Largest guidance scale accepted (absolute value).
    pub max_guidance: f32,
    /// Largest request message accepted, in bytes (init latents of long, large videos exceed gRPC's 4 MiB default).
    pub max_request_bytes: usize,
    /// Device-resident step loop (IO binding: latents stay in the execution provider's memory between steps):
    /// `auto` (on with a GPU provider, CUDA or TensorRT; off on the CPU provider, where the host loop is as fast),
    /// `on`, or `off`. `onnxruntime.cuda_graph = true` needs this loop: it is then on with `auto`, and `off` is
    /// refused when the config loads.
    pub io_binding: IoBinding,
    /// Run one step at each of the bundle's probe shapes before reporting SERVING (loads the kernels, and proves
    /// the graphs' frame axes dynamic at start-up). `vidmesh generate`, a one-shot process, turns it off: its one
    /// request would pay the same first-run costs once.
    pub warm_up: bool,
}

/// `io_binding` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoBinding {
    /// On exactly when the execution provider is a GPU one (CUDA, TensorRT), or with `onnxruntime.cuda_graph`.
    #[default]
    Auto,
    /// Always the device-resident loop.
    On,
    /// Always the host loop.
    Off,
}

/// `[batching]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most requests sharing one DiT call (each takes two rows with guidance, one without).
    pub max_batch: usize,
    /// Requests admitted at once (running or waiting for the model thread); more are refused with
    /// RESOURCE_EXHAUSTED.
    pub max_requests: usize,
    /// Retry delay suggested to refused clients, in milliseconds.
    pub retry_after_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::on(vidmesh_runtime::stage::ports::DENOISER),
            telemetry: TelemetryConfig::default(),
            onnxruntime: OnnxConfig::default(),
            model: ModelConfig::default(),
            batching: BatchingConfig::default(),
            max_steps: 200,
            max_guidance: 50.0,
            max_request_bytes: 64 << 20,
            io_binding: IoBinding::Auto,
            warm_up: true,
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self { max_batch: 8, max_requests: 64, retry_after_ms: 1000 }
    }
}

impl Config {
    /// Whether the DiT steps in the device-resident loop (engine::resident): `io_binding`, resolved against the
    /// provider, and always with `onnxruntime.cuda_graph` (validation refuses it together with `io_binding = "off"`).
    pub fn device_loop(&self) -> bool {
        self.onnxruntime.cuda_graph
            || match self.io_binding {
                IoBinding::Auto => self.onnxruntime.execution_provider.is_gpu(),
                IoBinding::On => true,
                IoBinding::Off => false,
            }
    }
}

impl Validate for Config {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        let guidance = self.max_guidance;
        checks
            .section(prefix, "server", &self.server)
            .section(prefix, "telemetry", &self.telemetry)
            .section(prefix, "batching", &self.batching)
            .require(!self.model.bundle.is_empty(), format_args!("{prefix}model.bundle"), "must name a bundle")
            .at_least(format_args!("{prefix}max_steps"), self.max_steps, 1)
            .require(
                guidance.is_finite() && guidance > 0.0,
                format_args!("{prefix}max_guidance"),
                format_args!("must be a number greater than 0 (is {guidance})"),
            )
            .at_least(format_args!("{prefix}max_request_bytes"), self.max_request_bytes, 1)
            .require(
                !(self.onnxruntime.cuda_graph && self.io_binding == IoBinding::Off),
                format_args!("{prefix}io_binding"),
                format_args!(
                    "\"off\" cannot be used with {prefix}onnxruntime.cuda_graph = true (CUDA graphs replay fixed \
                     device addresses, which only the device-resident loop keeps): use \"auto\" or \"on\""
                ),
            );
        self.onnxruntime.validate_with_graphs(&format!("{prefix}onnxruntime."), |key, problem| {
            checks.require(false, key, problem);
        });
    }
}

impl Validate for BatchingConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.at_least(format_args!("{prefix}max_batch"), self.max_batch, 1);
        checks.at_least(format_args!("{prefix}max_requests"), self.max_requests, 1);
    }
}

#[cfg(test)]
mod tests {
    use vidmesh_runtime::config::load_vars;

    use super::*;

    #[test]
    fn zero_batch_and_admission_are_refused_by_key() {
        let err =
            load_vars::<Config>(&[("VIDMESH__BATCHING__MAX_BATCH", "0"), ("VIDMESH__BATCHING__MAX_REQUESTS", "0")])
                .unwrap_err()
                .to_string();
        assert!(err.contains("batching.max_batch: must be at least 1 (is 0)"), "{err}");
        assert!(err.contains("batching.max_requests: must be at least 1 (is 0)"), "{err}");
    }

    #[test]
    fn gpu_options_that_do_not_hold_together_are_refused_by_key() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("VIDMESH__ONNXRUNTIME__CUDA_GRAPH", "true")],
                "onnxruntime.cuda_graph: true needs onnxruntime.execution_provider = \"cuda\" or \"tensorrt\" (it is \
                 \"cpu\")",
            ),
            (
                &[
                    ("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", "cuda"),
                    ("VIDMESH__ONNXRUNTIME__CUDA_GRAPH", "true"),
                    ("VIDMESH__IO_BINDING", "off"),
                ],
                "io_binding: \"off\" cannot be used with onnxruntime.cuda_graph = true",
            ),
            (
                &[
                    ("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", "cuda"),
                    ("VIDMESH__ONNXRUNTIME__TENSORRT__FP16", "true"),
                ],
                "onnxruntime.tensorrt.fp16: is set but onnxruntime.execution_provider is \"cuda\"",
            ),
            (
                &[
                    ("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", "tensorrt"),
                    ("VIDMESH__ONNXRUNTIME__TENSORRT__TIMING_CACHE", "true"),
                ],
                "onnxruntime.tensorrt.timing_cache: true needs onnxruntime.tensorrt.engine_cache_dir",
            ),
            (&[("VIDMESH__ONNXRUNTIME__DEVICE_ID", "-1")], "onnxruntime.device_id: must be at least 0 (is -1)"),
        ];
        for (vars, want) in cases {
            let err = load_vars::<Config>(vars).unwrap_err().to_string();
            assert!(err.contains(want), "{vars:?}: {err}");
        }
    }

    #[test]
    fn cuda_graphs_turn_the_device_loop_on() {
        let load = |vars: &[(&str, &str)]| load_vars::<Config>(vars).unwrap();
        assert!(!load(&[]).device_loop(), "auto on the CPU provider: host loop");
        for provider in ["cuda", "tensorrt"] {
            let c = load(&[("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", provider)]);
            assert!(c.device_loop(), "auto on {provider}");
            let graphs =
                [("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", provider), ("VIDMESH__ONNXRUNTIME__CUDA_GRAPH", "true")];
            assert!(load(&graphs).device_loop());
            let off = [("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", provider), ("VIDMESH__IO_BINDING", "off")];
            assert!(!load(&off).device_loop());
        }
        let trt = load(&[
            ("VIDMESH__ONNXRUNTIME__EXECUTION_PROVIDER", "tensorrt"),
            ("VIDMESH__ONNXRUNTIME__CUDA_GRAPH", "true"),
            ("VIDMESH__ONNXRUNTIME__TENSORRT__ENGINE_CACHE_DIR", "/var/cache/vidmesh/trt"),
            ("VIDMESH__ONNXRUNTIME__TENSORRT__FP16", "true"),
            ("VIDMESH__ONNXRUNTIME__TENSORRT__TIMING_CACHE", "true"),
        ]);
        assert!(trt.onnxruntime.tensorrt.fp16 && trt.device_loop());
    }

    #[test]
    fn guidance_limit_must_be_positive() {
        let err = load_vars::<Config>(&[("VIDMESH__MAX_GUIDANCE", "-1.5")]).unwrap_err().to_string();
        assert!(err.contains("max_guidance: must be a number greater than 0 (is -1.5)"), "{err}");
        let err = load_vars::<Config>(&[("VIDMESH__MAX_STEPS", "0")]).unwrap_err().to_string();
        assert!(err.contains("max_steps: must be at least 1 (is 0)"), "{err}");
    }
}
