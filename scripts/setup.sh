#!/usr/bin/env bash
# Creates .venv with CPU torch (from this machine's disk) and genba installed editable.
# Idempotent: a second run with an unchanged pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.genba-setup
want=$(sha256sum pyproject.toml setup.py policies/_mlp_kernel.c scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating .venv (one-off, ~1 min)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pin the CPU build first so nothing later pulls a multi-GB CUDA wheel; GPU users install their own torch.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${GENBA_TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done" >&2
