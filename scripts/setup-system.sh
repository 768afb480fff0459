#!/usr/bin/env bash
# System packages vidmesh builds and runs with, installed from Debian/Ubuntu's archive when missing:
# FFmpeg's libraries and headers (libavformat, libavcodec, libswscale: vidmesh decodes every common video format
# through them), pkg-config and libclang (the Rust bindings are generated at build time), and the ffmpeg command
# (the tests make and attack videos with it). Uses sudo when not root. On macOS: `brew install ffmpeg pkg-config llvm`.
set -euo pipefail
need=()
pkg-config --exists libavformat libavcodec libswscale libavutil 2>/dev/null || need+=(libavformat-dev libavcodec-dev libswscale-dev libavutil-dev pkg-config)
command -v pkg-config >/dev/null || need+=(pkg-config)
ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev clang)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
[ ${#need[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "install FFmpeg's development libraries, pkg-config and libclang (missing: ${need[*]})" >&2; exit 1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing from the package archive: ${need[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
