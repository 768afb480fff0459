#!/usr/bin/env bash
# System packages vidmesh builds and runs with, installed from Debian/Ubuntu's archive when missing:
# FFmpeg's libraries and headers (libavformat, libavcodec, libswscale: vidmesh decodes every common video format
# through them), pkg-config and libclang (the Rust bindings are generated at build time), and the ffmpeg command
# (the tests make and attack videos with it). Uses sudo when not root. On macOS: `brew install ffmpeg pkg-config llvm`.
set -euo pipefail
packages=(libavformat-dev libavcodec-dev libswscale-dev libavutil-dev pkg-config libclang-dev ffmpeg)
if ! command -v dpkg >/dev/null; then
  pkg-config --exists libavformat libavcodec libswscale libavutil && command -v ffmpeg >/dev/null && exit 0
  echo "install FFmpeg (libraries, headers and the ffmpeg command), pkg-config and libclang" >&2
  exit 1
fi
need=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing from the package archive: ${need[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
