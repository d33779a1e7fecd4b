#!/usr/bin/env bash
# Sets up (.venv, Debian's chromium for the browser test, Debian's postgresql for the sweep tests) and runs
# the whole test suite: one pytest worker per logical CPU (at most 4), each test file on one worker (its module
# fixtures built once). Arguments go to pytest after these, so `-n 0` runs in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f .ci/setup-browser.sh ]; then bash .ci/setup-browser.sh; fi
if [ -f .ci/setup-postgres.sh ]; then bash .ci/setup-postgres.sh; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec .venv/bin/python -m pytest -n logical --maxprocesses 4 --dist loadfile "$@"
