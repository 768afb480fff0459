//! The GPU options of `[onnxruntime]`: refused at config load when they do not hold together (the key named),
//! refused at session creation on a CPU-only ONNX Runtime (the provider and the remedy named, no panic, no CPU
//! fallback), TensorRT's keyed engine cache; and the DiT-step runner of the device recipe
//! (scripts/device/dit-step.sh), checked here on the CPU provider with the vidmesh-tiny DiT.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{RunOptions, Session};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use vidmesh_model::{Bundle, ExecutionProvider, Onnx, OnnxConfig, Part, TensorRtConfig, noise};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/vidmesh-tiny")
}

fn env() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// `toml` as an `[onnxruntime]` section, validated as the denoiser (`graphs`) or another service does.
fn problems(toml: &str, graphs: bool) -> Vec<String> {
    let c: OnnxConfig = toml::from_str(toml).unwrap();
    let mut out = Vec::new();
    let report = |k: String, p: String| out.push(format!("{k}: {p}"));
    if graphs {
        c.validate_with_graphs("onnxruntime.", report)
    } else {
        c.validate("onnxruntime.", report)
    }
    out
}

#[test]
fn each_bad_combination_is_refused_with_its_key() {
    let cases: &[(&str, bool, &str)] = &[
        (
            "cuda_graph = true",
            true,
            "onnxruntime.cuda_graph: true needs onnxruntime.execution_provider = \"cuda\" or \"tensorrt\" (it is \"cpu\")",
        ),
        (
            "execution_provider = \"cuda\"\ncuda_graph = true",
            false,
            "onnxruntime.cuda_graph: only the denoiser's device-resident loop runs sessions through CUDA graphs",
        ),
        (
            "execution_provider = \"cuda\"\n[tensorrt]\nfp16 = true",
            true,
            "onnxruntime.tensorrt.fp16: is set but onnxruntime.execution_provider is \"cuda\"",
        ),
        ("[tensorrt]\nengine_cache_dir = \"/cache\"", true, "onnxruntime.tensorrt.engine_cache_dir: is set but"),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nengine_cache_dir = \"cache/trt\"",
            true,
            "onnxruntime.tensorrt.engine_cache_dir: must be an absolute path (is \"cache/trt\")",
        ),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\ntiming_cache = true",
            true,
            "onnxruntime.tensorrt.timing_cache: true needs onnxruntime.tensorrt.engine_cache_dir",
        ),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nmax_workspace_mib = 2000000",
            true,
            "onnxruntime.tensorrt.max_workspace_mib: must be at most 1048576 (is 2000000)",
        ),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nprofile_min_shapes = \"latents:1x16x5x32x32\"",
            true,
            "onnxruntime.tensorrt.profile_opt_shapes: must be set with the other two profile_*_shapes",
        ),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nprofile_min_shapes = \"latents:2x16x5x32x32\"\n\
             profile_opt_shapes = \"latents:1x16x5x32x32\"\nprofile_max_shapes = \"latents:2x16x5x32x32\"",
            true,
            "onnxruntime.tensorrt.profile_opt_shapes: latents: [1, 16, 5, 32, 32] must have the rank of, and be at \
             least, [2, 16, 5, 32, 32]",
        ),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nprofile_min_shapes = \"latents:1x16\"\n\
             profile_opt_shapes = \"text_states:1x16\"\nprofile_max_shapes = \"latents:1xbig\"",
            true,
            "onnxruntime.tensorrt.profile_max_shapes: \"latents:1xbig\": dims must be positive integers",
        ),
        ("execution_provider = \"cuda\"\ndevice_id = -1", true, "onnxruntime.device_id: must be at least 0 (is -1)"),
    ];
    for (toml, graphs, want) in cases {
        let found = problems(toml, *graphs);
        assert!(found.iter().any(|p| p.contains(want)), "{toml:?}: want {want:?}, got {found:?}");
    }
    // Unknown keys and providers are refused by the parser, naming them.
    let err = toml::from_str::<OnnxConfig>("execution_provider = \"rocm\"").unwrap_err().to_string();
    assert!(err.contains("rocm") && err.contains("tensorrt"), "{err}");
    let err = toml::from_str::<OnnxConfig>("[tensorrt]\nint8 = true").unwrap_err().to_string();
    assert!(err.contains("int8"), "{err}");
}

#[test]
fn consistent_gpu_configs_pass() {
    for (toml, graphs) in [
        ("", false),
        ("execution_provider = \"cuda\"\ncuda_graph = true", true),
        ("execution_provider = \"tensorrt\"\ncuda_graph = true", true),
        (
            "execution_provider = \"tensorrt\"\n[tensorrt]\nengine_cache_dir = \"/var/cache/vidmesh/trt\"\nfp16 = true\n\
             timing_cache = true\nmax_workspace_mib = 8192\nprofile_min_shapes = \"latents:1x16x1x8x8\"\n\
             profile_opt_shapes = \"latents:2x16x21x60x104\"\nprofile_max_shapes = \"latents:16x16x21x60x104\"",
            false,
        ),
    ] {
        assert_eq!(problems(toml, graphs), Vec::<String>::new(), "{toml:?}");
    }
}

/// The CPU-only ONNX Runtime of CI refuses a GPU provider when the session is created: an error (no panic, no
/// CPU fallback) that names the key, the provider and what to do, for plain and captured sessions alike.
#[test]
fn gpu_providers_are_refused_cleanly_on_the_cpu_build() {
    let b = Bundle::open(&tiny(), &[Part::Dit]).unwrap();
    let file = b.path(&b.manifest.dit.component.file);
    for (provider, remedy) in
        [(ExecutionProvider::Tensorrt, "libnvinfer"), (ExecutionProvider::Cuda, "fetch-onnxruntime.sh --gpu")]
    {
        for cuda_graph in [false, true] {
            let cfg = OnnxConfig { execution_provider: provider, cuda_graph, ..Default::default() };
            let onnx = Onnx::init(&cfg, &env()).expect("ORT_DYLIB_PATH must point at libonnxruntime");
            for err in [onnx.session(&file).err(), onnx.captured_session(&file).err()] {
                let err = err.expect("the CPU-only library must refuse a GPU provider").to_string();
                let key = format!("onnxruntime.execution_provider = \"{}\"", provider.name());
                assert!(err.contains(&key) && err.contains(remedy) && err.contains("dit.onnx"), "{err}");
            }
        }
    }
}

/// TensorRT's engine cache directory is `engine_cache_dir` joined with a key of the ONNX Runtime build, TensorRT
/// version and GPU (unknown ones said so), and is created only once a provider registered.
#[test]
fn tensorrt_engine_caches_are_keyed_by_onnxruntime_tensorrt_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let tensorrt = TensorRtConfig { engine_cache_dir: dir.path().display().to_string(), ..Default::default() };
    let cfg = OnnxConfig { execution_provider: ExecutionProvider::Tensorrt, tensorrt, ..Default::default() };
    let onnx = Onnx::init(&cfg, &env()).unwrap();
    let cache = onnx.engine_cache_dir().unwrap();
    assert_eq!(cache.parent(), Some(dir.path()));
    let key = cache.file_name().unwrap().to_str().unwrap();
    assert!(key.starts_with("ort-") && key.contains("_trt-") && key.chars().all(|c| c != ' '), "{key}");
    assert!(onnx.session(&tiny().join("dit.onnx")).is_err());
    assert!(!cache.exists(), "nothing is created when TensorRT cannot be registered");
    assert!(Onnx::init(&OnnxConfig::default(), &env()).unwrap().engine_cache_dir().is_none());
}

// ---- The device recipe's DiT-step runner ----------------------------------------------------------------------

/// How the DiT runs in one variant of the recipe.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    /// Host tensors in, host tensors out, every step (the denoiser's host loop).
    Host,
    /// Device-resident inputs and output through IO binding (the denoiser's device-resident loop).
    IoBinding,
    /// IO binding with fixed buffers and `gpu_graph_id = 1` on a session built for capture (CUDA graphs).
    Graph,
}

/// One variant's numbers.
struct Measured {
    variant: Variant,
    session_s: f64,
    first_ms: f64,
    ms: Vec<f64>,
    h2d: usize,
    d2h: usize,
    window: (u128, u128),
    last: Vec<f32>,
}

/// The step to time: `rows` DiT rows at latent shape `latent`, `tokens` text tokens of width `hidden`.
struct StepRun {
    onnx: PathBuf,
    provider: ExecutionProvider,
    rows: usize,
    latent: [usize; 4],
    tokens: usize,
    hidden: usize,
    warmup: usize,
    iters: usize,
    /// Where to write each variant's last velocity (`<Variant>.f32`, little-endian), to compare across processes.
    dump: Option<PathBuf>,
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// One graph input's host data.
enum HostData {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
}

impl HostData {
    fn bytes(&self) -> usize {
        match self {
            Self::F32(_, d) => d.len() * 4,
            Self::I64(_, d) => d.len() * 8,
        }
    }

    /// A tensor of this data (a copy) on the host or, with `gpu`, on CUDA device 0.
    fn tensor(&self, gpu: bool) -> ort::Result<DynValue> {
        fn place<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
            shape: &[usize],
            data: &[T],
            gpu: bool,
        ) -> ort::Result<DynValue> {
            let t = Tensor::from_array((shape.to_vec(), data.to_vec()))?;
            Ok(if gpu { t.to(AllocationDevice::CUDA, 0)?.into_dyn() } else { t.into_dyn() })
        }
        match self {
            Self::F32(s, d) => place(s, d, gpu),
            Self::I64(s, d) => place(s, d, gpu),
        }
    }
}

/// The graph's inputs but the timestep, by rank and type: latents (rank 5), text states (rank 3), mask (rank 2
/// int64); and the timestep's name (rank 1).
fn inputs(s: &Session, r: &StepRun) -> (Vec<(String, HostData)>, String) {
    let [c, f, h, w] = r.latent;
    let (mut data, mut timestep) = (Vec::new(), String::new());
    for i in s.inputs() {
        let ValueType::Tensor { ty, shape, .. } = i.dtype() else { panic!("{} is not a tensor", i.name()) };
        let d = match (shape.len(), ty) {
            (5, TensorElementType::Float32) => {
                HostData::F32(vec![r.rows, c, f, h, w], noise::gaussian(1, r.rows * c * f * h * w))
            }
            (1, TensorElementType::Float32) => {
                timestep = i.name().to_string();
                continue;
            }
            (3, TensorElementType::Float32) => {
                HostData::F32(vec![r.rows, r.tokens, r.hidden], noise::gaussian(2, r.rows * r.tokens * r.hidden))
            }
            (2, TensorElementType::Int64) => HostData::I64(
                vec![r.rows, r.tokens],
                (0..r.rows * r.tokens).map(|k| i64::from(k % r.tokens < 12)).collect(),
            ),
            other => panic!("input {} has an unexpected rank/type {other:?}", i.name()),
        };
        data.push((i.name().to_string(), d));
    }
    (data, timestep)
}

/// Runs `variant` on `s`: `warmup` untimed steps (the first timed apart: graph capture happens in them), then
/// `iters` timed ones; the timestep changes every step, as in denoising. Host data is prepared outside the
/// timing, as the denoiser's host loop hands over owned buffers.
fn measure(s: &mut Session, r: &StepRun, variant: Variant, session_s: f64) -> ort::Result<Measured> {
    let gpu = r.provider.is_gpu();
    let device = if gpu { AllocationDevice::CUDA } else { AllocationDevice::CPU };
    let mem = MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default)?;
    let out_name = s.outputs()[0].name().to_string();
    let (host, t_name) = inputs(s, r);
    // Device copies of every input but the timestep (IO binding and graph variants), made once.
    let resident: Vec<(&str, DynValue)> =
        host.iter().map(|(n, d)| Ok((n.as_str(), d.tensor(gpu)?))).collect::<ort::Result<_>>()?;
    let alloc = if gpu { Allocator::new(s, mem.clone())? } else { Allocator::default() };
    let [c, f, h, w] = r.latent;
    let mut fixed_t = Tensor::<f32>::new(&alloc, [r.rows])?;
    let mut fixed_out = Tensor::<f32>::new(&alloc, [r.rows, c, f, h, w])?;
    let mut graph_run = RunOptions::new()?;
    graph_run.set("gpu_graph_id", "1")?;
    let (mut ms, mut first_ms, mut last, mut h2d, mut d2h) = (Vec::new(), 0.0, Vec::new(), r.rows * 4, 0);
    let start = unix_ms();
    let steps = r.warmup + r.iters;
    for step in 0..=steps {
        // Step `steps` is the read-back after timing (to compare the variants' velocities).
        let timestep = Tensor::from_array(([r.rows], vec![999.0 - step.min(steps - 1) as f32; r.rows]))?;
        let mut ins: Vec<(String, DynValue)> = if variant == Variant::Host {
            host.iter().map(|(n, d)| Ok((n.clone(), d.tensor(false)?))).collect::<ort::Result<_>>()?
        } else {
            Vec::new()
        };
        let clock = Instant::now();
        match variant {
            Variant::Host => {
                h2d = host.iter().map(|(_, d)| d.bytes()).sum::<usize>() + r.rows * 4;
                ins.push((t_name.clone(), timestep.into_dyn()));
                let outs = s.run(ins)?;
                let (_, v) = outs[out_name.as_str()].try_extract_tensor::<f32>()?;
                d2h = v.len() * 4;
                last = v.to_vec();
            }
            Variant::IoBinding | Variant::Graph => {
                let mut bind = s.create_binding()?;
                for (n, v) in &resident {
                    bind.bind_input(*n, v)?;
                }
                if variant == Variant::Graph {
                    timestep.copy_into(&mut fixed_t)?;
                    bind.bind_input(t_name.as_str(), &fixed_t)?;
                    bind.bind_output(out_name.as_str(), &mut fixed_out)?;
                    drop(s.run_binding_with_options(&bind, &graph_run)?);
                    bind.synchronize_outputs()?;
                    if step == steps {
                        last = fixed_out.to(AllocationDevice::CPU, 0)?.extract_tensor().1.to_vec();
                    }
                } else {
                    bind.bind_input(t_name.as_str(), &timestep)?;
                    bind.bind_output_to_device(out_name.as_str(), &mem)?;
                    let v = s.run_binding(&bind)?.remove(out_name.as_str());
                    bind.synchronize_outputs()?;
                    if step == steps {
                        let v: Tensor<f32> = v.ok_or_else(|| ort::Error::new("no output"))?.downcast()?;
                        last = v.to(AllocationDevice::CPU, 0)?.extract_tensor().1.to_vec();
                    }
                }
            }
        }
        let took = clock.elapsed().as_secs_f64() * 1e3;
        if step == 0 {
            first_ms = took;
        }
        if step >= r.warmup && step < steps {
            ms.push(took);
        }
    }
    let end = unix_ms();
    Ok(Measured { variant, session_s, first_ms, ms, h2d, d2h, window: (start, end), last })
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

/// Runs `variants` (one session for the plain ones, one built for capture for `Graph`) and returns the report as
/// JSON: per variant ms per step, first step, session creation, host↔device bytes per step, its time window (for
/// the recipe's GPU memory sampling) and the max abs difference of its last velocity from the first variant's.
fn dit_step(r: &StepRun, variants: &[Variant]) -> String {
    let mut rows = Vec::new();
    let mut reference: Option<Vec<f32>> = None;
    for &v in variants {
        let cfg = OnnxConfig {
            execution_provider: r.provider,
            cuda_graph: v == Variant::Graph && r.provider.is_gpu(),
            ..Default::default()
        };
        let clock = Instant::now();
        let result = Onnx::init(&cfg, &env())
            .and_then(|onnx| if v == Variant::Graph { onnx.captured_session(&r.onnx) } else { onnx.session(&r.onnx) })
            .map_err(|e| e.to_string())
            .and_then(|mut s| measure(&mut s, r, v, clock.elapsed().as_secs_f64()).map_err(|e| e.to_string()));
        rows.push(match result {
            Ok(m) => {
                if let Some(dir) = &r.dump {
                    let bytes: Vec<u8> = m.last.iter().flat_map(|x| x.to_le_bytes()).collect();
                    std::fs::write(dir.join(format!("{:?}.f32", m.variant)), bytes).unwrap();
                }
                let diff = reference.get_or_insert_with(|| m.last.clone());
                let diff = diff.iter().zip(&m.last).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                let mut sorted = m.ms.clone();
                sorted.sort_by(f64::total_cmp);
                let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
                format!(
                    "{{\"variant\": \"{:?}\", \"session_s\": {:.3}, \"first_ms\": {:.3}, \"median_ms\": {median:.3}, \
                     \"ms\": {:?}, \"h2d_bytes_per_step\": {}, \"d2h_bytes_per_step\": {}, \"start_unix_ms\": {}, \
                     \"end_unix_ms\": {}, \"max_abs_diff_vs_first\": {diff:e}, \"error\": null}}",
                    m.variant, m.session_s, m.first_ms, m.ms, m.h2d, m.d2h, m.window.0, m.window.1
                )
            }
            Err(e) => format!("{{\"variant\": \"{v:?}\", \"error\": {}}}", json_str(&e)),
        });
    }
    format!(
        "{{\"onnx\": {}, \"provider\": \"{}\", \"rows\": {}, \"latent\": {:?}, \"tokens\": {}, \"hidden\": {}, \
         \"warmup\": {}, \"iters\": {}, \"ort\": {}, \"variants\": [\n  {}\n]}}\n",
        json_str(&r.onnx.display().to_string()),
        r.provider.name(),
        r.rows,
        r.latent,
        r.tokens,
        r.hidden,
        r.warmup,
        r.iters,
        json_str(ort::info()),
        rows.join(",\n  ")
    )
}

/// The runner on the CPU provider with the tiny DiT: every variant runs, IO binding and the fixed-buffer (graph)
/// path give the host loop's velocity, and the report is complete.
#[test]
fn the_dit_step_runner_runs_every_variant_on_the_cpu() {
    let b = Bundle::open(&tiny(), &[Part::Dit]).unwrap();
    let m = &b.manifest;
    let r = StepRun {
        onnx: b.path(&m.dit.component.file),
        provider: ExecutionProvider::Cpu,
        rows: 2,
        latent: m.latent_shape(m.video.default_frames, m.video.default_height, m.video.default_width),
        tokens: m.text_encoder.max_tokens,
        hidden: m.text_encoder.hidden_size,
        warmup: 1,
        iters: 2,
        dump: None,
    };
    let report = dit_step(&r, &[Variant::Host, Variant::IoBinding, Variant::Graph]);
    assert_eq!(report.matches("\"error\": null").count(), 3, "{report}");
    assert_eq!(report.matches("\"max_abs_diff_vs_first\": 0e0").count(), 3, "{report}");
    let n: usize = r.latent.iter().product::<usize>() * r.rows * 4;
    assert!(report.contains(&format!("\"d2h_bytes_per_step\": {n}")), "{report}");
    assert!(report.contains(&format!("\"h2d_bytes_per_step\": {}", r.rows * 4)), "{report}");
}

/// The device recipe's entry (scripts/device/dit-step.sh runs it on the GPU machine): configured by
/// `VIDMESH_DIT_STEP_{ONNX,PROVIDER,ROWS,LATENT,TOKENS,HIDDEN,WARMUP,ITERS,VARIANTS,OUT,DUMP}`; writes the JSON
/// report to `…_OUT` (and stdout), each variant's last velocity into the folder `…_DUMP`. A variant that fails is
/// reported with its error, not a panic.
#[test]
#[ignore = "device recipe: scripts/device/dit-step.sh runs it with VIDMESH_DIT_STEP_* set"]
fn dit_step_on_the_device() {
    let var = |k: &str, d: &str| std::env::var(format!("VIDMESH_DIT_STEP_{k}")).unwrap_or_else(|_| d.to_string());
    let num = |k: &str, d: &str| var(k, d).parse::<usize>().unwrap_or_else(|e| panic!("VIDMESH_DIT_STEP_{k}: {e}"));
    let latent: Vec<usize> = var("LATENT", "16,21,60,104").split(',').map(|d| d.trim().parse().unwrap()).collect();
    let provider = match var("PROVIDER", "cuda").as_str() {
        "cpu" => ExecutionProvider::Cpu,
        "cuda" => ExecutionProvider::Cuda,
        "tensorrt" => ExecutionProvider::Tensorrt,
        p => panic!("VIDMESH_DIT_STEP_PROVIDER: {p:?} is not cpu, cuda or tensorrt"),
    };
    let r = StepRun {
        onnx: PathBuf::from(var("ONNX", "")),
        provider,
        rows: num("ROWS", "2"),
        latent: latent.try_into().expect("VIDMESH_DIT_STEP_LATENT: C,T,H,W"),
        tokens: num("TOKENS", "512"),
        hidden: num("HIDDEN", "4096"),
        warmup: num("WARMUP", "3"),
        iters: num("ITERS", "5"),
        dump: std::env::var("VIDMESH_DIT_STEP_DUMP").ok().map(PathBuf::from),
    };
    assert!(Path::new(&r.onnx).is_file(), "VIDMESH_DIT_STEP_ONNX must name the DiT graph");
    let variants: Vec<Variant> = var("VARIANTS", "host,iobinding,graph")
        .split(',')
        .map(|v| match v.trim() {
            "host" => Variant::Host,
            "iobinding" => Variant::IoBinding,
            "graph" => Variant::Graph,
            v => panic!("VIDMESH_DIT_STEP_VARIANTS: {v:?} is not host, iobinding or graph"),
        })
        .collect();
    let report = dit_step(&r, &variants);
    print!("{report}");
    if let Ok(out) = std::env::var("VIDMESH_DIT_STEP_OUT") {
        std::fs::write(&out, &report).unwrap();
    }
}
