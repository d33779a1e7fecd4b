"""`genba sweep` end to end: real worker processes, a real journal file and a real PostgreSQL server.

A tiny task (toy-target behaviour cloning, seconds per trial). In each storage one worker is killed
with SIGKILL in the middle of a trial: the trial must end failed, be run again, and the study must
still finish its N trials; the best preset it writes must reproduce its score with `genba train --preset`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pg_support import postgres_server

from policies.sweep_space import SweepError
from policies.sweep_storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 5
# Enough rounds that a trial lasts seconds, so the kill lands inside one.
FIXED = ["--set", "bc.rounds=6", "--set", "bc.round_episodes=20", "--set", "eval_episodes=10"]
SPACE = """
bc.learning_rate: {type: float, low: 0.0003, high: 0.01, log: true}
bc.iterations: {type: int, low: 50, high: 400, log: true}
bc.net_arch: {type: categorical, choices: [[16], [32, 32]]}
"""

pytestmark = pytest.mark.slow


def genba(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "genba", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def run_genba(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genba", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def wait_for_study(storage_spec: str, name: str, timeout: float = 30) -> optuna.Study:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return optuna.load_study(study_name=name, storage=open_storage(storage_spec, heartbeat_s=1))
        except (KeyError, SweepError):  # the coordinator has not made its directory or study yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def kill_mid_trial(study: optuna.Study, pids: set[int] | None, timeout: float = 60) -> tuple[int, int]:
    """SIGKILL the first worker (of `pids`, or any) seen running a trial; returns (pid, trial number)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker_pid")
            if pid is not None and (pids is None or pid in pids) and "run_dir" in t.user_attrs:
                # Stopped first, so the trial cannot finish between seeing it running and the kill (a short
                # trial on a loaded machine did): kill only if it is still running, else let the worker go on.
                os.kill(pid, signal.SIGSTOP)
                if study.get_trials(deepcopy=False)[t.number].state == TrialState.RUNNING:
                    os.kill(pid, signal.SIGKILL)
                    return pid, t.number
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no worker of {pids} was seen running a trial within {timeout} s")


def check_study_and_preset(study: optuna.Study, killed: int, sweep_dir: Path, tmp_path: Path) -> None:
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert retries and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == trials[killed].params  # the same point, run again
    finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= TRIALS

    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["best_trial"] is not None and Path(summary["best_preset"]).is_file()
    assert Path(summary["history_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = trials[summary["best_trial"]]
    out = tmp_path / "reproduce.json"
    rerun = run_genba("train", "toy-target", "--preset", summary["best_preset"], "--out", str(tmp_path / "reproduce"),
                      "--no-progress", "--json", str(out))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    lo, hi = best.user_attrs["success_ci95"]
    assert lo - 1e-9 <= json.loads(out.read_text())["best_success"] <= hi + 1e-9  # Wilson bounds carry float error


def test_sweep_on_postgres_survives_a_killed_worker(tmp_path: Path):
    (tmp_path / "space.yaml").write_text(SPACE)
    sweep_dir = tmp_path / "sweep"
    with postgres_server() as url:
        coordinator = genba("sweep", "toy-target", "--algo", "bc", "--trials", str(TRIALS), "--workers", "1",
                            "--space", str(tmp_path / "space.yaml"), "--storage", url, "--study", "pg", "--out", str(sweep_dir),
                            "--heartbeat", "1", *FIXED)
        outsider = None
        try:
            study = wait_for_study(url, "pg")
            # A worker as a cluster node starts it: only the heartbeat can tell that it died.
            outsider = genba("sweep", "--worker", "--study", "pg", "--storage", url, "--heartbeat", "1")
            _, killed = kill_mid_trial(study, {outsider.pid})
            out, _ = coordinator.communicate(timeout=150)
            assert coordinator.returncode == 0, out
        finally:
            stop(coordinator)
            if outsider is not None:
                stop(outsider)
        check_study_and_preset(study, killed, sweep_dir, tmp_path)


def test_sweep_on_the_journal_default_survives_a_killed_worker(tmp_path: Path):
    (tmp_path / "space.yaml").write_text(SPACE)
    sweep_dir = tmp_path / "sweep"
    coordinator = genba("sweep", "toy-target", "--algo", "bc", "--trials", str(TRIALS), "--workers", "2",
                        "--space", str(tmp_path / "space.yaml"), "--out", str(sweep_dir), "--study", "local", *FIXED)
    try:
        study = wait_for_study(str(sweep_dir / "journal.log"), "local")
        pid, killed = kill_mid_trial(study, None)  # every worker is one the coordinator started
        out, _ = coordinator.communicate(timeout=150)
        assert coordinator.returncode == 0, out
        # The coordinator reports its dead worker; the trial is failed and queued again by whichever sees it first,
        # the coordinator or the other worker (fail_orphans): check_study_and_preset checks the retry.
        assert f"(pid {pid}) exited with -9" in out, out
    finally:
        stop(coordinator)
    check_study_and_preset(study, killed, sweep_dir, tmp_path)


def test_a_sweep_killed_as_a_whole_resumes_with_its_finished_trials_kept(tmp_path: Path):
    (tmp_path / "space.yaml").write_text(SPACE)
    sweep_dir = tmp_path / "sweep"
    coordinator = genba("sweep", "toy-target", "--algo", "bc", "--trials", str(TRIALS), "--workers", "1",
                        "--space", str(tmp_path / "space.yaml"), "--out", str(sweep_dir), "--study", "local", *FIXED,
                        start_new_session=True)
    try:
        study = wait_for_study(str(sweep_dir / "journal.log"), "local")
        deadline = time.monotonic() + 60
        while not [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if "run_dir" in t.user_attrs]:
            assert time.monotonic() < deadline, "no trial started within 60 s"
            time.sleep(0.05)
        os.killpg(coordinator.pid, signal.SIGKILL)  # coordinator and worker at once: nobody left to fail the trial
    finally:
        stop(coordinator)
    finished_before = {t.number for t in study.get_trials() if t.state == TrialState.COMPLETE}
    killed = next(t.number for t in study.get_trials() if t.state == TrialState.RUNNING)

    # And moved before the resume: its study.json and the study's trials named the old folder.
    moved = sweep_dir.rename(tmp_path / "moved")
    resumed = run_genba("sweep", "--resume", "--out", str(moved), "--workers", "1", timeout=150)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"trials [{killed}] of dead workers failed and queued again" in resumed.stderr
    study = optuna.load_study(study_name="local", storage=open_storage(str(moved / "journal.log"), heartbeat_s=1))
    assert finished_before <= {t.number for t in study.get_trials() if t.state == TrialState.COMPLETE}  # nothing redone
    check_study_and_preset(study, killed, moved, tmp_path)
    rows = json.loads((moved / "sweep.json").read_text())["trials"]
    assert all(Path(row["run_dir"]).parent == (moved / "trials").resolve() for row in rows) and not sweep_dir.exists()


def test_seed_sweep_reports_mean_and_interval(tmp_path: Path):
    out = tmp_path / "seeds.json"
    result = run_genba("sweep", "toy-target", "--algo", "bc", "--seeds", "3", "--workers", "2", "--out", str(tmp_path / "s"),
                       "--set", "bc.iterations=60", "--json", str(out), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())["seed_summary"]
    assert summary["seeds"] == [0, 1, 2]
    lo, hi = summary["success"]["ci95"]
    assert lo - 1e-9 <= summary["success"]["mean"] <= hi + 1e-9
    assert "over 3 seeds: success" in result.stdout
    logs = "".join(log.read_text() for log in (tmp_path / "s" / "workers").glob("*.log"))
    assert "ExperimentalWarning" not in logs  # Optuna's heartbeat call wrote one at every pass of every worker


@pytest.mark.parametrize("args, message", [
    (["--storage", "mongodb://host/db"], "unsupported scheme 'mongodb'"),
    (["--storage", "postgresql://genba:secret@127.0.0.1:1/none"], "cannot reach the database"),
    (["--space", "{space}"], "type must be one of float, int, categorical, got 'floaty'"),
    (["--space", "{typo}"], "unknown bc key 'learning_rat'"),
    # each of these used to pass the check and fail in every trial: the sweep ended 'workers keep dying'
    (["--space", "{nan}"], "bc.learning_rate: low and high must be finite, got low=nan"),
    (["--space", "{step}"], "bc.learning_rate: step and log scale do not go together"),
    (["--space", "{choice}"], "bc.batch_size = 'abc' makes a config that cannot train: .* bc.batch_size must be an integer, got 'abc'"),
    (["--workers", "3", "--trials", "2"], "--workers 3 is more than the 2 trials to run"),
    (["--workers", "1000"], "--workers 1000 is over 4 per CPU"),  # forked hundreds of trial processes
    (["--storage", "postgresql://genba:secret@host:notaport/db"], "not a valid database URL"),  # a traceback, a dir left
    (["--storage", "sqlite://"], "an in-memory SQLite database cannot be shared"),  # every worker failed: 'no study'
    (["--heartbeat", "nan"], "--heartbeat must be >= 1 s, got nan"),
    # valid keys that SAC never reads: the sweep ran, every trial alike (the docs' own example did it)
    (["--algo", "sac", "--space", "{bc}"], "bc.learning_rate set behaviour cloning; --algo sac does not read them"),
])
def test_bad_storage_and_spaces_are_one_line_errors(tmp_path: Path, args, message):
    (tmp_path / "space.yaml").write_text("bc.learning_rate: {type: floaty, low: 0.001, high: 0.01}\n")
    (tmp_path / "typo.yaml").write_text("bc.learning_rat: {type: float, low: 0.001, high: 0.01}\n")
    (tmp_path / "nan.yaml").write_text("bc.learning_rate: {type: float, low: .nan, high: 0.01}\n")
    (tmp_path / "step.yaml").write_text("bc.learning_rate: {type: float, low: 0.001, high: 0.01, log: true, step: 0.001}\n")
    (tmp_path / "choice.yaml").write_text("bc.batch_size: {type: categorical, choices: [64, abc]}\n")
    (tmp_path / "bc.yaml").write_text("bc.learning_rate: {type: float, low: 0.001, high: 0.01}\n")
    args = [a.format(**{k: tmp_path / f"{k}.yaml" for k in ("space", "typo", "nan", "step", "choice", "bc")}) for a in args]
    result = run_genba("sweep", "toy-target", "--algo", "bc", "--out", str(tmp_path / "s"), *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and re.search(message, lines[-1]), result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())  # refused before the study
