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
