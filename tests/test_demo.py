"""The README's main job, end to end with tiny budgets: train -> fine-tune -> eval -> export -> serve -> twin -> summary."""

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
         "--speed", "0", "--train-set", "bc.demo_episodes=30", "--finetune", "0.1", "--out", str(out)],
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
    # --finetune: the residual run on top of the clone is what was exported, and the table sets it beside both.
    manifest = json.loads((out / "reach-bundle" / "manifest.json").read_text())
    assert manifest["policy"]["residual"]["scale"] == pytest.approx([0.3] * 5)
    assert summary["finetune_env_steps"] > 0 and "fine-tuned: success / cycle time" in result.stdout
    compared = summary["compared"]
    assert compared["expert"]["success_rate"] >= 0.9 and compared["expert"]["cycle_time_s"] > 0
    assert compared["fine-tuned"]["success_rate"] == summary["sim_success_rate"]
    assert set(compared) == {"expert", "clone", "fine-tuned"}
    # The bridge server it started is gone.
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_demo_refuses_to_overwrite(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genba", "demo", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and "never overwrites" in result.stderr and "Traceback" not in result.stderr


def test_demo_refuses_to_fine_tune_a_cell_without_a_fine_tuning_block(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genba", "demo", "--scenario", "palletize", "--finetune", "1",
                             "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and "has no residual fine-tuning block" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "demo").exists()
