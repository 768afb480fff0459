#!/usr/bin/env bash
# Wan2.1-T2V-1.3B's full-size architecture with random weights, as a vidmesh bundle (not committed: models/work/).
#   models/wan-1.3b-arch.sh [--weights fp16|fp32] [--out DIR]     (default: fp16, models/work/wan2.1-1.3b-<weights>)
# Real DiT (30 layers x 1536) and VAE configs, a 1-layer UMT5 at d_model 4096 (UMT5-XXL does not fit in memory).
# Writes the config-only source pipeline models/work/wan2.1-1.3b-arch-src, then runs models/export.sh --random-init.
# Peak memory: about 2x the DiT weights (fp16 ~2.9 GB, fp32 ~5.7 GB) plus ~2 GB; about 10-20 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weights=fp16 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --weights) weights="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$weights" in fp16|fp32) ;; *) echo "--weights must be fp16 or fp32" >&2; exit 2 ;; esac
out="${out:-$here/work/wan2.1-1.3b-$weights}"
src="$here/work/wan2.1-1.3b-arch-src"
"$here/export.sh" --help >/dev/null  # creates models/.venv-export on first use
(cd "$here" && PYTHONPATH="$here" .venv-export/bin/python -m vidmesh_export.tiny --family wan2.1-1.3b-arch --out "$src")
exec "$here/export.sh" --from "$src" --out "$out" --random-init --weights "$weights" --external-data \
  --defaults 17,128,128 --steps 3 --name "wan2.1-1.3b-arch-$weights" \
  --description "Wan2.1-T2V-1.3B architecture with RANDOM weights (diffusers WanPipeline config: DiT 30 layers x 1536, \
real Wan 2.1 VAE; text encoder: a 1-layer UMT5 at d_model 4096, not UMT5-XXL's 24 layers), $weights DiT and text \
encoder, exported to ONNX for vidmesh. For load, memory and speed tests only: its videos are noise."
