"""A command stopped by Ctrl-C, SIGTERM or SIGKILL says so and leaves no process of its own behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from twin_support import untrained_reach_bundle

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _as_in_a_terminal() -> None:
    """SIGINT as a command typed at a terminal has it: a test runner started in the background (CI) ignores it, and
    a child inherits that, so Ctrl-C would never reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def genba(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genba", *args], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_as_in_a_terminal, **kwargs)


def wait_for_children(proc: subprocess.Popen, count: int, timeout_s: float = 60.0) -> list[psutil.Process]:
    """The command's `count` Python children, once they all run (a pool's resource tracker is not one)."""
    parent, end = psutil.Process(proc.pid), time.monotonic() + timeout_s
    while time.monotonic() < end:
        children = [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
        if len(children) >= count:
            return children
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"{count} children did not start in {timeout_s} s")


def stop_all(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    """Never leak a process into other tests, even when an assertion failed."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)
    for child in children:
        if child.is_running():
            child.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_training_interrupted_keeps_its_steps_and_says_how_to_go_on(tmp_path, sig):
    """typer turned Ctrl-C into a silent exit 130, SIGTERM ended the process where it stood, and both lost every step
    since the last periodic checkpoint (20,000 in the SAC presets): now a checkpoint is written on the way out."""
    run = tmp_path / "run"
    proc = genba("train", "reach", "--algo", "sac", "--steps", "100000", "--out", str(run), "--no-progress",
                 "--set", "checkpoint_freq=100000", "--set", "eval_freq=300", "--set", "eval_episodes=2")
    try:
        seen = []
        while not any("300 steps" in line for line in seen):  # the first evaluation: training is under way
            line = proc.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_all(proc, [])
    assert proc.returncode == 130, err[-2000:]
    assert f"interrupted: {run} keeps its last checkpoint; go on with: genba train reach --out {run} --resume" in err
    assert "Traceback" not in err
    from policies.rundir import RunDir
    from policies.snapshot import open_snapshot

    latest = RunDir(run).latest_checkpoint()
    assert latest is not None and open_snapshot(latest).state["num_timesteps"] >= 300


def test_robustness_interrupted_stops_its_workers_at_once(tmp_path):
    """The pool's exit waited for each running row (minutes), and SIGTERM skipped it: its workers ran on as orphans."""
    bundle = untrained_reach_bundle(tmp_path)
    proc = genba("robustness", str(bundle), "--episodes", "2000", "--workers", "2", "--json", str(tmp_path / "r.json"))
    children: list[psutil.Process] = []
    try:
        children = wait_for_children(proc, 2)
        time.sleep(2.0)  # the workers are in their rows
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and err.rstrip().endswith("interrupted"), err[-2000:]
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        stop_all(proc, children)


def test_a_sweep_coordinator_killed_outright_takes_its_workers_along_and_resumes_from_its_directory(tmp_path):
    """SIGKILL runs no cleanup: the workers die with their parent (PR_SET_PDEATHSIG), or a resume would start K more.
    The resume finds the sweep's sqlite study from --out alone: it looked for a journal.log and said 'is it a sweep
    directory?'."""
    out = tmp_path / "sweep"
    proc = genba("sweep", "reach", "--algo", "bc", "--trials", "2", "--workers", "2", "--out", str(out),
                 "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--set", "bc.rounds=0", "--set", "eval_episodes=5")
    children: list[psutil.Process] = []
    try:
        children = wait_for_children(proc, 2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        stop_all(proc, children)
    resumed = subprocess.run([sys.executable, "-m", "genba", "sweep", "--resume", "--out", str(out), "--workers", "1"],
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"sweep {out}: resuming study 'sweep'" in resumed.stderr and "trials 2/2 finished" in resumed.stderr
    assert (out / "sweep.json").is_file() and (out / "best.yaml").is_file()


def test_a_twin_interrupted_reports_and_writes_its_finished_episodes(tmp_path):
    """It stopped without a summary or its --json: minutes of episodes through the bridge were lost."""
    import json

    from genba.server_process import ServerProcess

    bundle = untrained_reach_bundle(tmp_path)
    report = tmp_path / "twin.json"
    with ServerProcess([bundle], "--telemetry", "off", "--device", "cpu") as server:
        proc = genba("bridge", "twin", "reach", "--connect", server.endpoint, "--episodes", "100", "--speed", "4",
                     "--json", str(report))
        try:
            seen = []
            while not any(line.startswith("episode 1:") for line in seen):  # two finished episodes, then stop it
                line = proc.stderr.readline()
                assert line, "".join(seen)  # the twin ended first
                seen.append(line)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            stop_all(proc, [])
    assert proc.returncode == 130, err[-2000:]
    data = json.loads(report.read_text())
    assert data["interrupted"] and 1 <= data["episodes"] == len(data["episode_success"]) < 100
    assert f"over {data['episodes']} episodes (interrupted)" in out
    assert f"interrupted: the figures above are the {data['episodes']} finished episodes ({report})" in err
