#!/usr/bin/env bash
# Builds every service binary and the `vidmesh` CLI (release, locked, the gateway compiled in) and copies them to
# the directory given (the Dockerfile's build stages use it: /out).
set -euo pipefail
out="${1:?usage: scripts/build-binaries.sh OUT_DIR}"
cargo build --release --locked \
  -p vidmesh-gateway -p vidmesh-text-encoder -p vidmesh-denoiser -p vidmesh-decoder -p vidmesh-classifier \
  -p vidmesh-cli --features vidmesh-cli/gateway
mkdir -p "$out"
for b in vidmesh vidmesh-gateway vidmesh-text-encoder vidmesh-denoiser vidmesh-decoder vidmesh-classifier; do
  cp "target/release/$b" "$out/"
done
