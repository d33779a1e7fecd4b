#!/usr/bin/env bash
# For the device tool's GPU machine (Python 3.12, torch with CUDA, no registry access). Before the
# run, fetch the missing wheels here into the ignored .whl/:
#   for p in gymnasium==1.4.0 stable-baselines3==2.9.2 sb3-contrib==2.9.2 pyzmq==27.3.0 pydantic==2.14.4 \
#            pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 farama-notifications==0.0.6 \
#            cloudpickle==3.1.3; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $p
#   done
# then run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=400). pybullet has no cp312 wheel
# on the registry, so cell training on the GPU needs pybullet built there from source (not tried).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import sys,torch,numpy,onnxruntime as o;print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), o.get_available_providers())"
timeout 200 python3 bench/gpu_check.py "${OUT:-/tmp/gpu_out}" 2>&1 | grep -v Warning | tail -60
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_bundle_parity.py tests/test_bundle_loader.py tests/test_policies_train.py 2>&1 | tail -25
