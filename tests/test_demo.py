"""The README's main job, end to end with tiny budgets: train -> eval -> export -> serve -> twin -> summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_pipeline_end_to_end_leaves_nothing_running(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "genba", "demo", "--scenario", "reach", "--eval-episodes", "20", "--twin-episodes", "20",
         "--speed", "0", "--train-set", "bc.demo_episodes=30", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # Every stage left its artefact, and the summary table was printed.
    assert (out / "run" / "config.yaml").is_file() and (out / "reach-bundle" / "policy.onnx").is_file()
    assert "genba demo: reach" in result.stdout and "round trip p50 / p99" in result.stdout
    assert summary["twin_episodes"] == 20 and summary["sim_episodes"] == 20
    low = summary["sim_success_ci95"][0]
    assert summary["twin_success_rate"] >= low and summary["twin_within_sim_ci"]
    assert summary["control_steps"] > 0 and summary["round_trip_p50_ms"] > 0
    # The bridge server it started is gone.
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_demo_refuses_to_overwrite(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genba", "demo", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and "never overwrites" in result.stderr and "Traceback" not in result.stderr
