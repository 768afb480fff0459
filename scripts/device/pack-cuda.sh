#!/usr/bin/env bash
# Packs what the CUDA benchmarks need on the lent GPU machine, which has no network (../shared/gpu.md), into
# pieces that each fit one device call beside the working tree (64 MiB a call):
#   .cuda/c0 … .cuda/c3/p   the CUDA build of ONNX Runtime (onnxruntime-gpu 1.31.1: libonnxruntime, the shared
#                           and CUDA providers, ~315 MB) as a gzip -1 tar (~245 MB; fast here, Python unpacks it
#                           there), in 55 MiB slices;
#   .devbench/              the last slice (p), the release bench (vidmesh-bench.gz) and vidmesh-tiny's DiT
#                           (bundle/: dit.onnx + model.toml, all the DiT benchmarks read).
# The models/ folder (~85 MB) cannot travel with them: for the calls, untrack it
# (`git rm -r -q --cached models && echo /models/ >> .git/info/exclude`), then `git reset -q` and drop the line.
# Calls (each within 30 s of the last, so the machine stays warm; carry the one folder named):
#   carry .cuda/cK:   scripts/device/cuda-check.sh append .cuda/cK          (K = 0 … 3)
#   carry .devbench:  scripts/device/cuda-check.sh run
# docs/benchmarks.md ("GPU") holds what this recipe measured.
#   scripts/device/pack-cuda.sh                 # needs target/release/vidmesh-bench (cargo build --release -p vidmesh-bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
lib="$(scripts/fetch-onnxruntime.sh --gpu)"
dir="$(dirname "$lib")"
rm -rf .cuda .devbench && mkdir -p .cuda .devbench/bundle
for d in /.cuda/ /.devbench/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
tar -C "$dir" -cf - libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so |
  gzip -1 | split -b 55M -d -a 2 - .cuda/part-
parts=(.cuda/part-*)
for i in "${!parts[@]}"; do
  if (( i + 1 < ${#parts[@]} )); then mkdir -p ".cuda/c$i" && mv "${parts[$i]}" ".cuda/c$i/p"; else mv "${parts[$i]}" .devbench/p; fi
done
gzip -1 -c target/release/vidmesh-bench > .devbench/vidmesh-bench.gz
cp models/vidmesh-tiny/dit.onnx .devbench/bundle/
# Without the step-caching tables: the CUDA benchmarks step the whole graph, and the split graphs would not fit the call.
awk '/^\[/ { skip = ($0 ~ /^\[dit\.cache/) } !skip' models/vidmesh-tiny/model.toml > .devbench/bundle/model.toml
du -sh .cuda/c* .devbench >&2
