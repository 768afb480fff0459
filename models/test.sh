#!/usr/bin/env bash
# Check the committed bundle without torch: manifest + sha256, golden fixtures through ONNX Runtime, noise RNG,
# shapes world and evaluator, and a real MP4 from a prompt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-run"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-test.txt"
cd "$here"
"$venv/bin/python" -m vidmesh_tiny.manifest vidmesh-tiny
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
