"""Controller-side modules must run on a robot PC with numpy, pyzmq and msgpack only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER_MODULES = [
    "bridge.protocol", "bridge.client", "bridge.safety", "bridge.limits", "bridge.controller",
    "bridge.watchdog", "bridge.latency", "bridge.keys", "bridge.gantry",
]
HEAVY = ["torch", "pybullet", "gymnasium", "onnxruntime", "stable_baselines3", "policies", "sim", "typer"]


def test_controller_modules_import_without_torch_or_pybullet():
    code = (
        "import importlib, json, sys\n"
        f"for name in {CONTROLLER_MODULES!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_check_would_see_a_heavy_import():
    # Guards the test above against passing vacuously (e.g. a typo in the module list).
    code = "import sys, bridge.gantry, genba.gantry_bundle; print('gymnasium' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
