#!/usr/bin/env bash
# Every test of the repository. This is the README's test command; .ci/run calls it on a fresh machine.
# Set-up (first run only, cached after): FFmpeg's libraries and the ffmpeg command from Debian
# (scripts/setup-system.sh: vidmesh decodes video through libavcodec; the tests make and attack videos with ffmpeg),
# libonnxruntime from the onnxruntime wheel, Garage (a real S3 server, built with cargo, ~7 min), the official
# `openai` Python SDK and c2pa's `c2pa-python` in a venv (the HTTP API and the C2PA manifests are checked with
# them), and a running PostgreSQL on 127.0.0.1:5432 (the multi-replica gateway tests; started here when the
# Debian cluster is installed but down; VIDMESH_TEST_POSTGRES names another server).
# Then Rust: format, lints (warnings are errors), all tests against the real vidmesh-tiny bundle on ONNX Runtime;
# Python: the model bundle's manifest, noise, world, fixtures and generate command (models/test.sh).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-system.sh
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
GARAGE_BIN="${GARAGE_BIN:-$(scripts/install-garage.sh)}"
export ORT_DYLIB_PATH GARAGE_BIN
venv=tests/openai/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/openai/requirements.txt
export VIDMESH_OPENAI_PYTHON="$PWD/$venv/bin/python"
if [ -z "${VIDMESH_TEST_POSTGRES:-}" ] && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  fi
  pg_isready -q -h 127.0.0.1 || { echo "PostgreSQL must run on 127.0.0.1:5432 (trust auth) or VIDMESH_TEST_POSTGRES be set" >&2; exit 1; }
fi
command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is needed for the Kubernetes checks" >&2; exit 1; }
k8s/test.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The CLI as the README's first command builds it: without the gateway and S3.
cargo clippy -p vidmesh-cli --locked -- -D warnings
# A hung test must fail CI quickly rather than use up its time limit.
timeout 1800 cargo test --workspace --all-features --locked
scripts/device/dit-step.sh --dry-run  # the GPU recipe up to the device call (no GPU, no torch; skips if a download fails)
models/test.sh
