#!/usr/bin/env bash
# Every test of the repository. This is the README's test command; .ci/run calls it on a fresh machine.
# Rust: format, lints (warnings are errors), all tests against the real vidmesh-tiny bundle on ONNX Runtime.
# Python: the model bundle's manifest, noise, world, fixtures and generate command (models/test.sh).
set -euo pipefail
cd "$(dirname "$0")"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
models/test.sh
