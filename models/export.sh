#!/usr/bin/env bash
# Export a local diffusers pipeline directory (WanPipeline: Wan 2.1, 2.2 A14B, 2.2 TI2V-5B) to a vidmesh bundle (format 2,
# docs/model-bundle.md), checking every graph against PyTorch with ONNX Runtime.
#   models/export.sh --from models/work/wan2.1-tiny-src --out models/wan2.1-tiny [--random-init] [--weights fp16]
#   models/export.sh --help
# Needs Python 3.11+ and the PyPI registry on first use (creates models/.venv-export from requirements-export.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-export"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements-export.txt"
fi
# Relative --from/--out paths are resolved against the caller's directory (VIDMESH_CALLER_CWD), not models/.
export VIDMESH_CALLER_CWD="$PWD"
cd "$here"
PYTHONPATH="$here" exec "$venv/bin/python" -m vidmesh_export "$@"
