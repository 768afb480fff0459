#!/usr/bin/env bash
# Builds Garage (an S3-compatible object store; a test dependency run as a separate process) once into a cache and
# prints the binary's path. About 7 minutes on 2 cores the first time; instant afterwards.
set -euo pipefail
ROOT="${VIDMESH_CACHE:-$HOME/.cache/vidmesh}/garage"
BIN="$ROOT/bin/garage"
if [[ ! -x "$BIN" ]]; then
  cargo install garage --locked --root "$ROOT" >&2
fi
echo "$BIN"
