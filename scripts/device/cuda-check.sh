#!/usr/bin/env bash
# Device side of the CUDA check (runs on the lent GPU machine, from the repository root; see pack-cuda.sh).
#   scripts/device/cuda-check.sh append DIR    # append the carried DIR/p (one slice) to /root/ort-cuda.tgz
#   scripts/device/cuda-check.sh run           # the last slice, unpack, then the CUDA benchmarks (carry .devbench)
# It records: the GPU, CUDA registration with error-on-failure (no CPU fallback), DiT step latency at batch
# 1/2/4/8, and the denoiser's requests/s with and without step-level batching and with the device-resident loop
# (IO binding), including the latent bytes moved between host and GPU per DiT call. Reports go to $OUT.
set -euo pipefail
case "${1:-}" in
  append)
    cat "$2"/p >> /root/ort-cuda.tgz
    ls -l /root/ort-cuda.tgz ;;
  run)
    cat .devbench/p >> /root/ort-cuda.tgz
    mkdir -p /root/ort-cuda
    python3 -c 'import tarfile; tarfile.open("/root/ort-cuda.tgz").extractall("/root/ort-cuda")'
    python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      .devbench/vidmesh-bench.gz /root/vidmesh-bench
    chmod +x /root/vidmesh-bench
    site="$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')"
    LD_LIBRARY_PATH="/root/ort-cuda:$(ls -d "$site"/nvidia/*/lib | paste -sd:):${LD_LIBRARY_PATH:-}"
    export LD_LIBRARY_PATH ORT_DYLIB_PATH=/root/ort-cuda/libonnxruntime.so.1.31.1
    # The bench reads the bundle at its build path, <repo>/models/vidmesh-tiny.
    rm -rf models/vidmesh-tiny && mkdir -p models && ln -s "$PWD/.devbench/bundle" models/vidmesh-tiny
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    out="${OUT:-/tmp}"
    /root/vidmesh-bench --cuda --only dit --out "$out/cuda-dit.md"
    /root/vidmesh-bench --cuda --only denoiser --out "$out/cuda-denoiser.md"
    cat "$out"/cuda-*.md ;;
  *) echo "usage: $0 append DIR | run" >&2; exit 2 ;;
esac
