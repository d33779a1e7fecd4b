#!/usr/bin/env bash
# A cp312 pybullet wheel for the GPU machine (bench/gpu_check.sh), written to .whl/: the registry has no
# cp312 pybullet wheel, and the sdist (80 MB) is over what a device call may carry. Built from the sdist by
# a Python 3.12 here (PY312, default python3.12; about 4 minutes on 2 cores), linked stripped (the library is
# 8 MB instead of 107 MB with its debug information) and with pybullet_data cut to what genba and its tests
# load (franka_panda, kuka_iiwa, xarm, the plane).
set -euo pipefail
cd "$(dirname "$0")/.."
PY312=${PY312:-python3.12}
version=3.2.7
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --no-binary=:all: -d "$work" "pybullet==$version"
tar xzf "$work/pybullet-$version.tar.gz" -C "$work"
find "$work/pybullet-$version/examples/pybullet/gym/pybullet_data" -mindepth 1 -maxdepth 1 ! -name franka_panda \
  ! -name kuka_iiwa ! -name xarm ! -name 'plane.*' ! -name checker_blue.png ! -name __init__.py -exec rm -rf {} +
LDFLAGS=-s "$PY312" -m pip wheel -q --no-deps --no-cache-dir -w .whl "$work/pybullet-$version"
ls -la .whl/pybullet-*.whl
