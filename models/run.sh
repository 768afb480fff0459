#!/usr/bin/env bash
# Regenerate data, train (resuming from models/work/ checkpoints), export, evaluate and write golden fixtures.
#   models/run.sh            all stages
#   models/run.sh export     one stage: vae | dit | export | eval | fixtures | passive
# Needs Python 3.11+ and the PyPI registry (torch is ~3 GB). CPU is enough: see MODEL_CARD.md for wall times.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
fi
exec .venv/bin/python -m vidmesh_tiny.pipeline "$@"
