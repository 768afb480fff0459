#!/usr/bin/env bash
# Device side of the CUDA check (runs on the lent GPU machine, from the repository root; see pack-cuda.sh).
#   scripts/device/cuda-check.sh append DIR    # append the carried DIR/p (one slice of the parts) to /root/ort-cuda.tar.xz
#   scripts/device/cuda-check.sh run BENCH     # unpack, then the CUDA benchmarks with the carried release bench
# BENCH is target/release/vidmesh-bench built on the x86-64 host (plain or .xz), carried in the last call.
# It records: CUDA registration with error-on-failure (no CPU fallback), DiT step latency at batch 1/2/4/8, and the
# denoiser's requests/s with and without step-level batching and with the device-resident loop (IO binding),
# including the latent bytes moved between host and GPU per DiT call (0 expected on an unchanged batch).
set -euo pipefail
case "${1:-}" in
  append)
    cat "$2"/p >> /root/ort-cuda.tar.xz
    ls -l /root/ort-cuda.tar.xz ;;
  run)
    mkdir -p /root/ort-cuda
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
      /root/ort-cuda.tar.xz | tar -C /root/ort-cuda -xf -
    site="$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')"
    LD_LIBRARY_PATH="/root/ort-cuda:$(ls -d "$site"/nvidia/*/lib | paste -sd:):${LD_LIBRARY_PATH:-}"
    export LD_LIBRARY_PATH ORT_DYLIB_PATH=/root/ort-cuda/libonnxruntime.so.1.31.1
    bench="$2"
    if [[ "$bench" == *.xz ]]; then
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$bench" /root/vidmesh-bench
      bench=/root/vidmesh-bench
    fi
    chmod +x "$bench"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    out="${OUT:-/tmp}"
    "$bench" --cuda --only dit --out "$out/cuda-dit.md"
    "$bench" --cuda --only denoiser --out "$out/cuda-denoiser.md" ;;
  *) echo "usage: $0 append DIR | run BENCH" >&2; exit 2 ;;
esac
