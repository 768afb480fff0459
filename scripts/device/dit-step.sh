#!/usr/bin/env bash
# One DiT denoising step at Wan2.1-T2V-1.3B's real size (latents [2, 16, 21, 60, 104]: 81 frames at 480x832, CFG)
# on the lent GPU: vidmesh's ONNX Runtime path (CUDA EP with host tensors, with IO binding, with IO binding + CUDA
# graph) against PyTorch eager and torch.compile on the same seeded random weights; ms/step, MFU, host<->device
# bytes per step and peak GPU memory (scripts/device/dit_step.py says how each is measured).
# The GPU machine has no network and each call carries at most 64 MiB (../../shared/gpu.md), so:
#   - ONNX Runtime's CUDA build travels in slices, as for the CUDA check: scripts/device/pack-cuda.sh cuts them
#     (.cuda/c0 … c3, and .devbench/p: the last) and `scripts/device/cuda-check.sh append` receives them there;
#   - the weights are made there (seeded random init) and exported to ONNX there, in the background while the
#     slices travel (the export takes minutes of CPU): the diffusers 0.42.1 and onnxscript 0.7.2 wheels travel
#     (torch, onnx, onnx-ir and the rest are in the machine's image);
#   - vidmesh's side is the release build of crates/model/tests/providers.rs (its ignored `dit_step_on_the_device`
#     runner: sessions from vidmesh_model::Onnx), gzip-compressed.
# Usage:
#   scripts/device/dit-step.sh --dry-run   here, without GPU or torch: everything up to the calls, packed into a temp
#                                          folder; each call's load checked against the 64 MiB limit; dit_step.py
#                                          compiled, its torch-free parts run, its config compared with the repo's;
#                                          prints the calls. Skips (exit 0, with the reason) when a download fails.
#   scripts/device/dit-step.sh pack        here: .cuda/cK and .devbench/p (pack-cuda.sh, which needs the release
#                                          vidmesh-bench: built when missing), then .ditstep/ (last slice, runner,
#                                          wheels, the expected size and sha256 of the reassembled archive)
#   scripts/device/dit-step.sh start       there, first call (carry .ditstep): install, start the export in the
#                                          background (it runs on through the append calls)
#   scripts/device/dit-step.sh device [ARGS]   there, last call (nothing carried): the last slice, unpack, wait for
#                                          the export, run `dit_step.py all --skip-export ARGS` (e.g. --no-compile,
#                                          --iters 3); the report and JSON results go to $OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=$((64 << 20))
WHEELS=(diffusers==0.42.1 onnxscript==0.7.2)
W="${DITSTEP_DIR:-/root/ditstep}" # there: the export, its inputs and results (kept between calls while the machine is warm)

# The diffusers and onnxscript wheels into $1 (pure Python; cached under $VIDMESH_CACHE/wheels).
wheels() {
  local cache="${VIDMESH_CACHE:-$HOME/.cache/vidmesh}/wheels"
  mkdir -p "$cache" "$1"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$cache" "${WHEELS[@]}" >&2 || return 1
  cp "$cache"/diffusers-0.42.1-*.whl "$cache"/onnxscript-0.7.2-*.whl "$1"/
}

# Builds the providers test binary (`cargo test --no-run`, profile $1: release or dev) and prints its path.
runner() {
  local flags=(--locked -p vidmesh-model --test providers --no-run --message-format=json)
  if [ "$1" = release ]; then flags+=(--release); else flags+=(--all-features); fi
  cargo test "${flags[@]}" 2>/dev/null | python3 -c '
import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("executable")]
print(exe[-1])'
}

# Bytes of the working tree that travels with every call: tracked and untracked-not-ignored files, models/ untracked.
tree_bytes() {
  git ls-files -z --cached --others --exclude-standard | grep -zv '^models/' | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

# Checks each call's load (tree + carried folder) against the limit. Args: tree bytes, then "name:path" per call.
check_calls() {
  local tree="$1" fail=0 name path bytes c
  shift
  echo "working tree per call (models/ untracked): $(mib "$tree")"
  for c in "$@"; do
    name="${c%%:*}" path="${c#*:}"
    bytes=$(($(du -sb "$path" | cut -f1) + tree))
    if ((bytes > LIMIT)); then
      echo "  $name: $(mib "$bytes") OVER the 64 MiB limit" >&2
      fail=1
    else
      echo "  $name: $(mib "$bytes")"
    fi
  done
  return "$fail"
}

# The calls to issue, in order (args: the slice folders).
print_calls() {
  local x d
  x="$(git rev-parse --git-path info/exclude)"
  local tracked
  tracked="$(git ls-files -z models | xargs -0 stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')"
  echo "Before the calls (models/ has $(mib "$tracked") tracked, too much to travel): git rm -r -q --cached models && echo /models/ >> \"$x\""
  echo "After them: git reset -q -- models && sed -i '\\#^/models/\$#d' \"$x\""
  echo "The run tool's calls, back to back (the machine stays warm 30 s after a call; the last one checks the"
  echo "reassembled archive's size and sha256 and says so if the machine went cold in between):"
  echo '  run(command="scripts/device/dit-step.sh start", carry=[".ditstep"], timeout_s=120)'
  for d in "$@"; do
    echo "  run(command=\"scripts/device/cuda-check.sh append $d\", carry=[\"$d\"], timeout_s=120)"
  done
  echo '  run(command="scripts/device/dit-step.sh device", timeout_s=600)'
  echo "Then docs/benchmarks.md gets \$OUT/dit-step.md with these calls and the reply's device line."
}

# Writes the reassembled archive's size and sha256 into $1 from the slices $2… (in order).
expect() {
  local dir="$1"
  shift
  cat "$@" | wc -c > "$dir/tgz.size"
  cat "$@" | sha256sum | cut -d' ' -f1 > "$dir/tgz.sha256"
}

exclude() {
  local f d
  f="$(git rev-parse --git-path info/exclude)"
  mkdir -p "$(dirname "$f")"
  for d in "$@"; do grep -qx "$d" "$f" 2> /dev/null || echo "$d" >> "$f"; done
}

dry_run() {
  local carry lib bin target slices=() calls=() names=() parts i d
  TMP_DIR="$(mktemp -d)"
  trap 'rm -rf "$TMP_DIR"' EXIT
  carry="$TMP_DIR/.ditstep"
  mkdir -p "$carry/whl"
  skip() {
    echo "dit-step dry run: SKIPPED: $* (nothing was checked past this point)"
    exit 0
  }
  python3 -m py_compile scripts/device/dit_step.py
  python3 scripts/device/dit_step.py selftest
  python3 scripts/device/dit_step.py check-config
  wheels "$carry/whl" || skip "the ${WHEELS[*]} wheels could not be downloaded"
  lib="$(scripts/fetch-onnxruntime.sh --gpu 2> /dev/null)" || skip "onnxruntime-gpu could not be downloaded"
  if [ -f .devbench/p ] && compgen -G '.cuda/c*/p' > /dev/null; then
    echo "ONNX Runtime CUDA slices: pack-cuda.sh's (.cuda/c*, .devbench/p)"
    for d in .cuda/c*; do slices+=("$d"); done
    cp .devbench/p "$carry/p"
    expect "$carry" .cuda/c*/p .devbench/p
  else
    # pack-cuda.sh needs the release vidmesh-bench, which the dry run does not build: the archive and slices made
    # the same way here (tar | gzip -1 | split -b 55M) have the same sizes.
    echo "ONNX Runtime CUDA slices: cut here as pack-cuda.sh cuts them (no .cuda/ from pack-cuda.sh)"
    mkdir -p "$TMP_DIR/cuda"
    tar -C "$(dirname "$lib")" -cf - libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so \
      libonnxruntime_providers_cuda.so | gzip -1 | split -b 55M -d -a 2 - "$TMP_DIR/cuda/part-"
    parts=("$TMP_DIR"/cuda/part-*)
    for i in "${!parts[@]}"; do
      ((i + 1 < ${#parts[@]})) || continue
      mkdir -p "$TMP_DIR/.cuda/c$i" && mv "${parts[$i]}" "$TMP_DIR/.cuda/c$i/p"
      slices+=("$TMP_DIR/.cuda/c$i")
    done
    mv "${parts[-1]}" "$carry/p"
    expect "$carry" "$TMP_DIR"/.cuda/c*/p "$carry/p"
  fi
  # The test binary `cargo test` already built (test.sh runs this after it), newer than its source; else build it.
  target="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  bin="$(find "$target/debug/deps" -maxdepth 1 -type f -executable -name 'providers-*' \
    -newer crates/model/tests/providers.rs -printf '%T@ %p\n' 2> /dev/null | sort -rn | head -1 | cut -d' ' -f2)"
  [ -n "$bin" ] || bin="$(runner dev)" || {
    echo "the providers test binary did not build" >&2
    exit 1
  }
  gzip -9 -c "$bin" > "$carry/providers.gz"
  echo "runner: $bin, $(mib "$(stat -c %s "$carry/providers.gz")") gzipped (dev profile; pack carries the smaller release build)"
  echo "carry folder .ditstep:"
  (cd "$carry" && find . -type f -printf '  %p %s bytes\n' | sort)
  for d in "${slices[@]}"; do
    calls+=("$(basename "$d"):$d")
    names+=(".cuda/$(basename "$d")")
  done
  check_calls "$(tree_bytes)" "start (.ditstep):$carry" "${calls[@]}"
  print_calls "${names[@]}"
  echo "dit-step dry run: ok (no GPU used)"
}

pack() {
  local calls=() names=() d
  [ -x target/release/vidmesh-bench ] || cargo build --release --locked -p vidmesh-bench
  scripts/device/pack-cuda.sh
  rm -rf .ditstep && mkdir -p .ditstep/whl
  exclude /.ditstep/
  cp .devbench/p .ditstep/p
  expect .ditstep .cuda/c*/p .devbench/p
  wheels .ditstep/whl
  gzip -9 -c "$(runner release)" > .ditstep/providers.gz
  for d in .cuda/c*; do
    calls+=("$(basename "$d"):$d")
    names+=("$d")
  done
  check_calls "$(tree_bytes)" "start (.ditstep):.ditstep" "${calls[@]}"
  print_calls "${names[@]}"
}

start() {
  rm -rf "$W" /root/ort-cuda.tgz /root/ort-cuda
  mkdir -p "$W"
  cp .ditstep/p .ditstep/tgz.size .ditstep/tgz.sha256 scripts/device/dit_step.py "$W"/
  python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    .ditstep/providers.gz "$W/runner"
  chmod +x "$W/runner"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" \
    .ditstep/whl/*.whl
  # A new process session outlives the call (the device tool ends only the command's own processes).
  PYTHONPATH="$W/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 setsid nohup bash -c \
    "python3 $W/dit_step.py export --work $W $* > $W/export.log 2>&1; echo \$? > $W/export.rc" \
    < /dev/null > /dev/null 2>&1 &
  echo "export started in the background ($W/export.log); next: the append calls, then dit-step.sh device"
}

device() {
  local began out="${OUT:-/tmp/ditstep-out}" tgz=/root/ort-cuda.tgz want have last site waited=0
  began="$(date +%s)"
  mkdir -p "$out"
  [ -f "$W/tgz.size" ] || {
    echo "no $W/tgz.size: issue 'scripts/device/dit-step.sh start' (carry .ditstep) first" >&2
    exit 1
  }
  want="$(cat "$W/tgz.size")" last="$(stat -c %s "$W/p")" have="$(stat -c %s "$tgz" 2> /dev/null || echo 0)"
  if ((have == want - last)); then
    cat "$W/p" >> "$tgz"
  elif ((have != want)); then
    echo "$tgz has $have bytes, $((want - last)) expected before the last slice: the machine was not kept warm" \
      "between the calls (or a slice is missing); issue the calls again from start" >&2
    exit 1
  fi
  [ "$(sha256sum "$tgz" | cut -d' ' -f1)" = "$(cat "$W/tgz.sha256")" ] || {
    echo "$tgz: sha256 mismatch" >&2
    exit 1
  }
  [ -f /root/ort-cuda/libonnxruntime.so.1.31.1 ] || {
    mkdir -p /root/ort-cuda
    python3 -c 'import tarfile; tarfile.open("/root/ort-cuda.tgz").extractall("/root/ort-cuda")'
  }
  export PYTHONPATH="$W/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  site="$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')"
  LD_LIBRARY_PATH="/root/ort-cuda:$(ls -d "$site"/nvidia/*/lib | paste -sd:):${LD_LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH ORT_DYLIB_PATH=/root/ort-cuda/libonnxruntime.so.1.31.1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  while [ ! -f "$W/export.rc" ] && ((waited < 360)); do
    sleep 10
    waited=$((waited + 10))
    echo "waiting for the export ($waited s): $(tail -c 160 "$W/export.log" | tr '\n' ' ')"
  done
  cp "$W/export.log" "$out/" 2> /dev/null || true
  [ "$(cat "$W/export.rc" 2> /dev/null)" = 0 ] || {
    echo "the export failed or is still running:" >&2
    tail -20 "$W/export.log" >&2
    exit 1
  }
  set -o pipefail
  python3 "$W/dit_step.py" all --skip-export --runner "$W/runner" --work "$W" --out "$out" \
    --budget-s $((570 - $(date +%s) + began)) "$@" 2>&1 | tee "$out/log.txt"
  cp "$W/export.json" "$W/ort.json" "$W/torch.json" "$out/" 2> /dev/null || true
}

case "${1:-}" in
  --dry-run) dry_run ;;
  pack) pack ;;
  start) shift; start "$@" ;;
  device) shift; device "$@" ;;
  *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
