#!/usr/bin/env bash
# The CUDA checks of issue 14, for the device tool's GPU machine (Python 3.12 with CUDA torch, OpenCV,
# msgpack, onnxruntime; no registry access). Stages, each short enough for one 600-s call:
#   bridge  a pixel bundle served on cuda and on cpu, 1 and 8 controllers, raw frames (GPU batching)
#   train   bench/train_time.py conveyor-pick --obs pixels on one seed, --device cuda
#   toy     bench/gpu_check.py: a physics-free training run on cuda and cpu, bundle parity and latency
#   tests   the bundle, training and pixel-bundle tests where torch sees a GPU (device "auto" picks it)
# Prepare here, once (both folders are ignored through .git/info/exclude):
#   .whl/  the packages that image lacks, as cp312 wheels:
#     for p in gymnasium==1.4.0 stable-baselines3==2.9.2 sb3-contrib==2.9.2 pyzmq==27.3.0 pydantic==2.14.4 \
#              pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 farama-notifications==0.0.6; do
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $p
#     done
#   and pybullet, which has no cp312 wheel on the registry: built here from its sdist by a Python 3.12 with
#   pybullet_data cut to the arms genba uses (franka_panda, kuka_iiwa, xarm, plane), so all fits the 64 MiB a
#   call may carry (bench/gpu_pybullet_wheel.sh).
#   .gpu/bundle/  a bin-sort pixel bundle (genba export RUN -o .gpu/bundle).
# Then: run(command="bash bench/gpu_check.sh bridge toy", carry=[".whl", ".gpu"], timeout_s=560) and
#       run(command="bash bench/gpu_check.sh train", carry=[".whl", ".gpu"], timeout_s=560); "tests" if device time is left.
# Figures land in $OUT (JSON per stage) and in the output.
set -u
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys,torch,pybullet,cv2,onnxruntime as o;print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), cv2.__version__, o.get_available_providers())" || exit 1
for stage in "$@"; do
  echo "== $stage ($(date +%T))"
  case "$stage" in
    bridge)
      for dev in cuda cpu; do
        timeout 150 python3 bench/bridge_images.py --bundle .gpu/bundle --device "$dev" --controllers 1,8 --encodings raw \
          --seconds 10 --json "$out/bridge_$dev.json" 2>&1 | grep -v Warning | tail -12
      done ;;
    train)
      # CPU figure to compare with: docs/benchmarks.md, "Policies from pixels" (seed 0: 588 s alone on 2 vCPUs).
      timeout 500 python3 bench/train_time.py conveyor-pick --obs pixels --seeds 1 --device cuda \
        --json "$out/train_cuda.json" 2>&1 | grep -v Warning | tail -25 ;;
    toy)
      timeout 200 python3 bench/gpu_check.py "$out" 2>&1 | grep -v Warning | tail -40 ;;
    tests)
      timeout 300 python3 -m pytest -q -p no:cacheprovider -n 8 --dist loadfile tests/test_bundle_parity.py \
        tests/test_bundle_loader.py tests/test_policies_train.py tests/test_pixel_bundle.py 2>&1 | tail -25 ;;
    *) echo "unknown stage $stage (bridge, train, toy, tests)"; exit 2 ;;
  esac
done
