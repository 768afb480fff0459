#!/usr/bin/env bash
# Renders the overlays (cpu, gpu, and mtls: cpu with components/mtls) with kustomize and checks them: every object validated in strict mode against Kubernetes
# 1.37 (kubernetes-validate, from PyPI), then the deployment policy (check_policy.py) — which must also reject a
# copy with a writable root filesystem and an unpinned image, so a policy that passes everything fails here.
# (That the config each manifest sets is exactly what the services read is checked by crates/cli/tests/k8s.rs.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for overlay in cpu gpu mtls; do
  kubectl kustomize "$here/overlays/$overlay" > "$out/$overlay.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version 1.37.0 "$out/$overlay.yaml"
  echo "k8s/overlays/$overlay: $(grep -c '^kind:' "$out/$overlay.yaml") objects valid (strict, Kubernetes 1.37.0)"
done
"$venv/bin/python" "$here/check_policy.py" "$out/cpu.yaml" "$out/gpu.yaml" "$out/mtls.yaml"
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/; s/:0\.1\.0-cuda/:latest/' "$out/gpu.yaml" > "$out/bad.yaml"
if "$venv/bin/python" "$here/check_policy.py" "$out/bad.yaml" > "$out/bad.txt"; then
  echo "check_policy.py accepted a writable root filesystem and an unpinned image" >&2
  exit 1
fi
grep -q "root filesystem is writable" "$out/bad.txt" && grep -q "not pinned" "$out/bad.txt"
echo "check_policy.py rejects a broken copy ($(wc -l < "$out/bad.txt") violations)"
