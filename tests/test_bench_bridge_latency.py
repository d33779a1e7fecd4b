"""bench/bridge_latency.py serves any bundle, and never leaves a child process behind, however it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from twin_support import untrained_reach_bundle

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, str(ROOT / "bench" / "bridge_latency.py")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory) -> Path:
    return untrained_reach_bundle(tmp_path_factory.mktemp("reach"))


def test_the_bench_measures_a_panda_cell_bundle(reach_bundle, tmp_path):
    out = tmp_path / "latency.json"
    proc = subprocess.run([*BENCH, "--bundle", str(reach_bundle), "--seconds", "1", "--hz", "200", "--block", "0.5",
                           "--json", str(out)], capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["bridge"]["bundle"] == "reach-untrained" and result["bridge"]["backend"] == "onnx"
    assert result["echo"]["count"] > 100 and result["bridge"]["count"] > 100
    assert result["bridge"]["client_counts"].get("bad_replies", 0) == 0


def bench_children(bench: psutil.Process, timeout_s: float) -> list[psutil.Process]:
    """The echo server and the bridge server, once both are up."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        children = bench.children(recursive=True)
        lines = [" ".join(c.cmdline()) for c in children if c.is_running()]
        if any("--echo-server" in line for line in lines) and any("bridge serve" in line for line in lines):
            return children
        time.sleep(0.2)
    raise AssertionError(f"the bench did not start both servers in {timeout_s} s: {lines}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_mid_run_the_bench_leaves_no_child_behind(reach_bundle, sig):
    proc = subprocess.Popen([*BENCH, "--bundle", str(reach_bundle), "--seconds", "120", "--hz", "200"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    children: list[psutil.Process] = []
    try:
        children = bench_children(psutil.Process(proc.pid), timeout_s=90)
        time.sleep(1.0)  # mid-run: measuring
        proc.send_signal(sig)
        proc.wait(30)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for child in children:  # never leak a server into other tests, even when the assertion failed
            if child.is_running():
                child.kill()


def test_the_chunk_bench_reports_served_hold_and_boundary_figures_per_delay(tmp_path):
    out = tmp_path / "chunks.json"
    proc = subprocess.run([*BENCH, "--chunks", "--delays", "30", "--jitter", "10", "--drop", "0", "--seconds", "3",
                           "--chunk", "6", "--json", str(out)], capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["delay_ms"] == 30.0 and run["chunk"] == 6 and run["periods"] == 60
    # 30-40 ms of added delay is within one 50 ms period: after the first chunk every period is served.
    assert run["served_fraction"] >= 0.95 and run["served_fraction"] + run["hold_fraction"] == 1.0
    assert run["boundaries"] > 3 and run["boundary_jump_mean"] is not None and run["stale_chunks"] == 0
