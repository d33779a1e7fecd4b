#!/usr/bin/env bash
# Sets up (.venv, Debian's chromium for the browser test, Debian's postgresql for the sweep tests) and runs
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f .ci/setup-browser.sh ]; then bash .ci/setup-browser.sh; fi
if [ -f .ci/setup-postgres.sh ]; then bash .ci/setup-postgres.sh; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest "$@"
