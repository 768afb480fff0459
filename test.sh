#!/usr/bin/env bash
# Every test of the repository. This is the README's test command; .ci/run calls it on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"
models/test.sh
