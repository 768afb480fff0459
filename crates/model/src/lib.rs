//! vidmesh model bundles: a directory with `model.toml` beside its ONNX files and tokenizer (format:
//! docs/model-bundle.md).
//!
//! Invariant: a [`Bundle`] only exists after its manifest parsed, validated (geometry, supported sizes, scheduler,
//! component inputs and the tensor names the manifest maps) and — with [`Bundle::open`] — every file's sha256 matched. Sessions come from [`Onnx`], which
//! loads libonnxruntime once per process and never falls back to the CPU silently when CUDA was asked for.

mod bundle;
pub mod conditioning;
mod error;
mod fetch;
mod manifest;
pub mod noise;
mod onnx;
mod parts;
mod plan;
mod providers;
mod text;
mod validate;

pub use bundle::{Bundle, ModelConfig};
pub use conditioning::{ConditioningSpec, Extension, Mode, Task};
pub use error::ModelError;
pub use fetch::{fetch_s3, parse_s3_uri};
pub use manifest::{
    CacheGraph, CacheName, CacheTier, Choices, Component, DataFile, DecodeMode, Dim, Dit2Spec, DitNames, DitSpec,
    DynamicShift, EXTRA_SOURCES, ExtraInput, FrameRule, GuidanceMode, Io, LatentNorm, Manifest, ModelInfo, NoiseSpec,
    Padding, PassiveSpec, PromptClean, Range, SCHEDULERS, SchedulerSpec, StepCacheSpec, TextEncoder2Names,
    TextEncoder2Spec, TextEncoderNames, TextEncoderSpec, TierPolicy, TimestepRounding, VaeNames, VaeSpec, VideoSpec,
    WEIGHTS,
};
pub use onnx::{ExecutionProvider, Onnx, OnnxConfig};
pub use parts::{Part, sha256_file};
pub use plan::{Ask, Limits, Plan};
pub use providers::TensorRtConfig;
pub use text::{check_prompt, check_text};
