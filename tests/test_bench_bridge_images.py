"""bench/bridge_images.py measures steps with camera frames per encoding and controller count, and says its policy is a toy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_bench_reports_each_encoding_and_controller_count(tmp_path):
    out = tmp_path / "images.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bridge_images.py"), "--seconds", "0.5", "--hz", "40",
                           "--controllers", "1,2", "--encodings", "raw,jpeg", "--json", str(out)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "toy policy" in proc.stdout
    result = json.loads(out.read_text())
    assert "toy policy" in result["policy"]
    assert [(r["encoding"], r["controllers"]) for r in result["runs"]] == [("raw", 1), ("jpeg", 1), ("raw", 2), ("jpeg", 2)]
    for r in result["runs"]:
        assert r["replies"] >= 10 * r["controllers"] and r["p99_us"] >= r["p50_us"] > 0
    raw, jpeg = result["runs"][0], result["runs"][1]
    assert raw["sent_as"] == ["raw"] and raw["frame_bytes_per_step"] == 84 * 84 * 4
    assert jpeg["sent_as"] == ["jpeg", "png"] and jpeg["frame_bytes_per_step"] < raw["frame_bytes_per_step"] / 2


def test_the_echo_carries_the_same_bytes_and_the_224_rgb_frames_are_one_colour_camera(tmp_path):
    out = tmp_path / "echo.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bridge_images.py"), "--seconds", "0.5", "--hz", "40",
                           "--controllers", "1", "--encodings", "raw,jpeg", "--frame-set", "224-rgb", "--echo", "--json", str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["frames"] == "conveyor-pick: overview 224x224x3"
    runs = result["runs"]
    assert [(r["variant"], r["encoding"]) for r in runs] == [("echo", "raw"), ("bridge", "raw"), ("echo", "jpeg"), ("bridge", "jpeg")]
    for echo, bridge in (runs[0:2], runs[2:4]):
        # The echo sends what the bridge client sends: the same frames in the same agreed encoding.
        assert echo["frame_bytes_per_step"] == bridge["frame_bytes_per_step"] and echo["sent_as"] == bridge["sent_as"]
        assert echo["replies"] >= 10 and echo["p99_us"] >= echo["p50_us"] > 0
    assert runs[0]["frame_bytes_per_step"] == 224 * 224 * 3 and runs[2]["sent_as"] == ["jpeg"]
    ratios = {r["encoding"]: r for r in result["bridge_over_echo"]}
    for e in ("raw", "jpeg"):
        bridge, echo = runs[0 if e == "raw" else 2:][1], runs[0 if e == "raw" else 2:][0]
        assert ratios[e]["p99"] == bridge["p99_us"] / echo["p99_us"] and ratios[e]["p99_met"] == (ratios[e]["p99"] <= 2.0)
    assert "bridge/echo raw x 1" in proc.stdout


def test_bridge_latency_obs_pixels_runs_the_frames_echo_comparison_at_the_cells_control_rate(tmp_path):
    out = tmp_path / "pixels.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bridge_latency.py"), "--obs", "pixels", "--seconds", "0.5",
                           "--controllers", "1", "--encodings", "raw", "--json", str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["hz"] == 20.0  # conveyor-pick's control rate: the toy's frames are that cell's
    assert [(r["variant"], r["encoding"]) for r in result["runs"]] == [("echo", "raw"), ("bridge", "raw")]
    assert result["runs"][1]["replies"] >= 5 and "bridge/echo raw x 1" in proc.stdout


def test_a_setting_with_no_timed_bridge_reply_is_a_miss_not_a_crash():
    """A 2-s run (1-s blocks, first ticks untimed) once timed no bridge reply: the ratio divided None and the bench
    died after its 57 s of measuring."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bridge_images import echo_ratios

    row = {"encoding": "jpeg", "controllers": 1}
    runs = [{**row, "variant": "echo", "p50_us": 400.0, "p99_us": 800.0},
            {**row, "variant": "bridge", "p50_us": None, "p99_us": None},
            {**row, "controllers": 8, "variant": "echo", "p50_us": 400.0, "p99_us": 800.0},
            {**row, "controllers": 8, "variant": "bridge", "p50_us": 600.0, "p99_us": 1200.0}]
    assert echo_ratios(runs) == [{**row, "p50": None, "p99": None, "p99_met": False},
                                 {**row, "controllers": 8, "p50": 1.5, "p99": 1.5, "p99_met": True}]
