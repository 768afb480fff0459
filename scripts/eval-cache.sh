#!/usr/bin/env bash
# Quality of the step-caching tiers on the bundled model (docs/benchmarks.md, "Step caching"): N shapes-world
# prompts (half seen, half held-out combinations) made by vidmesh's engines at every tier, scored from the RGB frames
# by the shapes-world evaluator, each video compared with its `off` twin (PSNR).
#   scripts/eval-cache.sh [WORK_DIR] [N]        (default: /tmp/vidmesh-cache-eval, 200; ~15 min on 2 cores)
# Needs ORT_DYLIB_PATH (scripts/fetch-onnxruntime.sh). Writes WORK_DIR/cache.md and WORK_DIR/cache.json.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/vidmesh-cache-eval}" n="${2:-200}"
venv=models/.venv-run
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r models/requirements-test.txt
cargo build -q --release -p vidmesh-bench --bin cache_eval
rm -rf "$work" && mkdir -p "$work"
(cd models && "../$venv/bin/python" -m vidmesh_tiny.cache_eval prepare "$work" --n "$n")
target/release/cache_eval "$work/cases.jsonl" "$work/out"
(cd models && "../$venv/bin/python" -m vidmesh_tiny.cache_eval score "$work")
