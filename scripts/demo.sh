#!/usr/bin/env bash
# Sets up .venv (once) and runs the main job end to end: `genba demo`. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec .venv/bin/genba demo "$@"
