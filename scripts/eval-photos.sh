#!/usr/bin/env bash
# The photographs the watermark evaluation pans and zooms over (`watermark_eval --natural --photos DIR`):
# scikit-image's bundled natural images (no download beyond PyPI), copied into DIR (default
# ~/.cache/vidmesh/eval-photos). Prints DIR.
set -euo pipefail
dir="${1:-${VIDMESH_CACHE:-$HOME/.cache/vidmesh}/eval-photos}"
venv="${VIDMESH_CACHE:-$HOME/.cache/vidmesh}/skimage-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "scikit-image==0.25.*" >&2
data="$("$venv/bin/python" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data"))')"
mkdir -p "$dir"
# Photographs and micrographs of at least 256×256 (not the synthetic test patterns, text pages or silhouettes).
for f in astronaut.png brick.png camera.png chelsea.png coffee.png coins.png grass.png gravel.png \
         hubble_deep_field.jpg ihc.png moon.png motorcycle_left.png retina.jpg rocket.jpg; do
  cp "$data/$f" "$dir/"
done
echo "$dir"
