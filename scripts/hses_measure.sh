#!/bin/bash
# The issue's measurement: policy server, HSES emulator (+ cell channel), adapter; and the twin for comparison.
set -u
# usage: scripts/hses_measure.sh BUNDLE [EPISODES] [TWIN_SPEED] [OUT_DIR]
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
B=$1; shift
OUT=${3:-/tmp/hses2}; mkdir -p "$OUT"
$PY -m genba bridge serve $B --bind tcp://127.0.0.1:5581 --telemetry off --device cpu --log-level WARNING > $OUT/serve.out 2>&1 &
SP=$!
$PY -m genba hses-sim conveyor-pick --robot gp7 --bind 127.0.0.1:10140 --speed 1 --replace-moves --cell-bind tcp://127.0.0.1:5590 > $OUT/sim.out 2>&1 &
EP=$!
trap 'kill $SP $EP 2>/dev/null; wait' EXIT
sleep 8
$PY -m genba bridge run --controller hses://127.0.0.1:10140 --cell tcp://127.0.0.1:5590 --connect tcp://127.0.0.1:5581 --episodes ${1:-50} --json $OUT/hses-cp.json > $OUT/hses-run.out 2> $OUT/hses-run.err
echo "hses rc $?" >> $OUT/hses-run.out
nice -n 5 $PY -m genba bridge twin conveyor-pick --robot gp7 --connect tcp://127.0.0.1:5581 --episodes ${1:-50} --speed ${2:-1} --json $OUT/twin-cp.json > $OUT/twin-run.out 2> $OUT/twin-run.err
echo "twin rc $?" >> $OUT/twin-run.out
