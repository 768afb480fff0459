#!/usr/bin/env bash
# Packs the CUDA build of ONNX Runtime (onnxruntime-gpu 1.31.1: libonnxruntime + the CUDA provider, ~315 MB) into
# xz parts (~195 MB; zstd is not on the device's package list, Python's lzma unpacks xz) small enough to travel
# beside the working tree to the lent GPU machine, which has no network (../shared/gpu.md). Parts go to .cuda/part-NN (ignored by git). Slice them to fit each call beside the working
# tree (`cat .cuda/part-* | dd ... of=.cuda/cK/p`), carry `.cuda/cK` in call K with
# `scripts/device/cuda-check.sh append .cuda/cK`, and end with `scripts/device/cuda-check.sh run BENCH`.
# The tree is ~46 MB, 45 of them the bundle and fixtures; untracking those for the calls (`git rm -r --cached
# models/vidmesh-tiny models/fixtures` + .git/info/exclude, `git reset` after) and carrying only dit.onnx +
# model.toml fits the ~195 MB of parts and the xz'd bench (~10 MB) in four calls. Not yet run on the device: the
# session that wrote this had spent its device time on training (see the issue notes).
#   scripts/device/pack-cuda.sh [PART_MIB]     # default 20 MiB parts
set -euo pipefail
cd "$(dirname "$0")/../.."
part="${1:-20}"
lib="$(scripts/fetch-onnxruntime.sh --gpu)"
dir="$(dirname "$lib")"
rm -rf .cuda && mkdir -p .cuda
grep -qx '/.cuda/' .git/info/exclude 2>/dev/null || echo '/.cuda/' >> .git/info/exclude
tar -C "$dir" -cf - libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so | xz -T0 -6 | split -b "${part}M" -d -a 2 - .cuda/part-
ls -l .cuda >&2
echo "$(ls .cuda | wc -l) parts of ${part} MiB in .cuda/"
