#!/usr/bin/env bash
# Sets up (.venv, and Debian's chromium for the browser test) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f .ci/setup-browser.sh ]; then bash .ci/setup-browser.sh; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest "$@"
