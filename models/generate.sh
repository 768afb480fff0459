#!/usr/bin/env bash
# Make a video from a prompt with the bundled vidmesh-tiny model on CPU (ONNX Runtime; no torch needed).
#   models/generate.sh "a small red circle moving left slowly on a black background" -o out.mp4
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-run"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements-run.txt"
fi
PYTHONPATH="$here" exec "$venv/bin/python" -m vidmesh_tiny.generate "$@"
