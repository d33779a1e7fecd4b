"""bench/obs_comparison.py: state, perceived and pixels rows on the same cell with tiny real policies, and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policies.config import parse_overrides, resolve_config
from policies.run_export import export_run
from policies.train import train

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "obs_comparison.py"
CELL = "bin-sort"
TINY = ["bc.demo_episodes=1", "bc.iterations=5", "bc.batch_size=8", "bc.rounds=0", "eval_episodes=1"]
LATENCY_SAMPLES = 50


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    """A tiny state clone exported as a bundle, and a tiny pixel run (1 demo episode, 5 gradient steps each)."""
    root = tmp_path_factory.mktemp("obs-comparison")
    train(resolve_config(CELL, "bc", parse_overrides(TINY)), root / "state-run", progress=False)
    train(resolve_config(CELL, "bc", parse_overrides(["obs_mode=pixels", *TINY])), root / "pixel-run", progress=False)
    return {"state": export_run(root / "state-run", root / "state-bundle"), "pixels": root / "pixel-run"}


@pytest.fixture(scope="module")
def report(policies, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "comparison.json"
    proc = run_bench(CELL, "--state", str(policies["state"]), "--pixels", str(policies["pixels"]), "--episodes", "1",
                     "--lightings", "1", "--latency-samples", str(LATENCY_SAMPLES), "--json", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(path.read_text()), proc.stdout, proc.stderr


def test_one_row_per_mode_with_success_cycle_collisions_and_latency(report):
    data, stdout, _ = report
    assert [(row["policy"], row["mode"]) for row in data["rows"]] == [("state", "state"), ("state", "perceived"),
                                                                      ("pixels", "pixels")]
    assert data["seed"] == 60_000_000 and "seed + i" in data["seed_note"] and data["robot"] == "gp7"
    for row in data["rows"]:
        lo, hi = row["success_ci95"]
        assert row["eval"]["episodes"] == 1 and 0.0 <= lo <= row["success_rate"] <= hi <= 1.0
        assert row["collisions_per_episode"] >= 0.0 and row["eval"]["env_steps"] > 0
        latency = row["latency_cpu_us"]
        assert latency["n"] == min(LATENCY_SAMPLES, row["eval"]["env_steps"])
        assert latency["p99_us"] >= latency["p50_us"] > 0
        assert ("latency_cuda_us" in row) == data["cuda"]  # a CUDA column only where torch sees a GPU
        assert f"{row['policy']:7s} {row['mode']:10s}" in stdout
    assert data["cuda"] == torch.cuda.is_available() and ("cuda p50" in stdout) == data["cuda"]
    assert "EXCLUDES" in data["latency_note"] and "EXCLUDES" in stdout


def test_perception_is_timed_apart_per_camera_frame(report):
    data, stdout, _ = report
    perception = data["perception"]
    assert perception == data["rows"][1]["perception"]
    assert perception["source"] == "locator" and "PartLocator.locate" in perception["note"]
    # bin-sort's perception camera runs at 10 Hz, half the control rate: about one frame every other step.
    assert 0.4 <= perception["frames"] / perception["control_steps"] <= 0.6
    assert perception["p99_us"] >= perception["p50_us"] > 0 and perception["per_control_step_us"] > 0
    assert "perception (PartLocator.locate" in stdout


def test_lighting_reruns_the_camera_rows_and_says_why_state_is_not_rerun(report):
    data, stdout, _ = report
    names = [light["name"] for light in data["lightings"]]
    assert len(names) == 1 and not data["lightings"][0]["pybullet_default"]
    state, perceived, pixels = data["rows"]
    assert "lighting" not in state and "light cannot change it" in state["lighting_note"]
    for row in (perceived, pixels):
        assert list(row["lighting"]) == names
        lit = row["lighting"][names[0]]
        assert lit["eval"]["episodes"] == 1 and 0.0 <= lit["success_rate"] <= 1.0
    assert "light cannot change it" in stdout and names[0] in stdout


@pytest.mark.parametrize("swap, message", [
    ({"state": "pixels"}, "is a pixel policy (it acts on camera images); pass it as --pixels"),
    ({"pixels": "state"}, "is a state policy (it acts on state features); pass it as --state"),
])
def test_a_policy_given_for_the_other_mode_is_refused(policies, swap, message):
    given = {role: policies[swap.get(role, role)] for role in ("state", "pixels")}
    proc = run_bench(CELL, "--state", str(given["state"]), "--pixels", str(given["pixels"]), "--episodes", "1")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_a_policy_of_another_cell_is_refused(policies):
    proc = run_bench("conveyor-pick", "--state", str(policies["state"]), "--pixels", str(policies["pixels"]))
    assert proc.returncode == 2 and "trained on 'bin-sort', not on 'conveyor-pick'" in proc.stderr, proc.stderr[-2000:]
