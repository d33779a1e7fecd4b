"""bench/pixel_fit.py: times the preset's student on the cell's real image and reading shapes, per memory layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_bench_times_both_layouts_on_the_cells_shapes(tmp_path):
    out = tmp_path / "fit.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "pixel_fit.py"), "bin-sort", "--iterations", "2", "--rounds", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())
    assert row["images"] == {"infeed_px": [84, 84, 3], "infeed_px_depth": [84, 84, 1], "wrist": [84, 84, 3], "wrist_depth": [84, 84, 1]}
    assert row["batch_size"] == 64 and row["device"] == "cpu"
    steps = row["ms_per_step"]
    assert set(steps) == {"channels_last", "contiguous"} and all(v > 0 for v in steps.values())
    assert 0 < row["augment_ms_per_step"] < max(steps.values())  # a part of a step
    assert "gradient step: channels_last" in proc.stdout
