#!/usr/bin/env bash
# For the device tool's GPU machine (Python 3.12, torch with CUDA, no registry access). Before the
# run, fetch the missing wheels here into the ignored .whl/ (see docs/status.md), then
#   run(command="bash bench/gpu_check.sh", carry=[".whl"])
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import sys,torch,numpy,onnxruntime as o;print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), o.get_available_providers())"
timeout 200 python3 bench/gpu_check.py "${OUT:-/tmp/gpu_out}" 2>&1 | grep -v Warning | tail -60
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_bundle_parity.py tests/test_bundle_loader.py tests/test_policies_train.py 2>&1 | tail -25
