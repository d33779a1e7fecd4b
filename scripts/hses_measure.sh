#!/bin/bash
# The measurement: policy server, HSES emulator (+ cell channel), adapter; and the twin for comparison.
set -u
cd /work/hses2
PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 PYTHONPATH=/work/hses2
B=/tmp/hses2/cp-gp7-bundle
$PY -m genba bridge serve $B --bind tcp://127.0.0.1:5581 --telemetry off --device cpu --log-level WARNING > /tmp/hses2/serve.out 2>&1 &
SP=$!
$PY -m genba hses-sim conveyor-pick --robot gp7 --bind 127.0.0.1:10140 --speed 1 --replace-moves --cell-bind tcp://127.0.0.1:5590 > /tmp/hses2/sim.out 2>&1 &
EP=$!
trap 'kill $SP $EP 2>/dev/null; wait' EXIT
sleep 8
$PY -m genba bridge run --controller hses://127.0.0.1:10140 --cell tcp://127.0.0.1:5590 --connect tcp://127.0.0.1:5581 --episodes ${1:-50} --json /tmp/hses2/hses-cp.json > /tmp/hses2/hses-run.out 2> /tmp/hses2/hses-run.err
echo "hses rc $?" >> /tmp/hses2/hses-run.out
nice -n 5 $PY -m genba bridge twin conveyor-pick --robot gp7 --connect tcp://127.0.0.1:5581 --episodes ${1:-50} --speed ${2:-1} --json /tmp/hses2/twin-cp.json > /tmp/hses2/twin-run.out 2> /tmp/hses2/twin-run.err
echo "twin rc $?" >> /tmp/hses2/twin-run.out
