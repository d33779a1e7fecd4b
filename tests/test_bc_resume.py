"""State behaviour cloning resumes after its last complete round: a run SIGKILLed after a round's evaluation
continues from that round's checkpoint (data, clone, batch sampler) to the result an uninterrupted run gives, and a
finished run's --resume trains nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import torch

from policies.config import resolve_config
from policies.rundir import LOCK_FILE, RunDir
from policies.snapshot import open_snapshot
from policies.train import train

REPO = Path(__file__).resolve().parents[1]
# reach's preset (DAgger rounds driven by the clone), small: 4 rounds in a few seconds.
SMALL = {"eval_episodes": 5, "bc": {"demo_episodes": 10, "iterations": 200, "round_episodes": 5, "rounds": 3}}
SETS = ["--set", "eval_episodes=5", "--set", "bc.demo_episodes=10", "--set", "bc.iterations=200", "--set", "bc.round_episodes=5",
        "--set", "bc.rounds=3"]


def _no_wall(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("wall_s")}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return open_snapshot(path).load_model().policy.state_dict()


def test_a_killed_bc_run_resumes_after_its_last_complete_round_to_the_uninterrupted_result(tmp_path, capsys):
    ref = tmp_path / "ref"
    whole = train(resolve_config("reach", "bc", SMALL), ref, progress=False)

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genba", "train", "reach", "--algo", "bc", "--out", str(out), "--no-progress",
                             *SETS], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("[round 2,"):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run = RunDir(out)
    assert run.summary() is None and [e["round"] for e in run.eval_history()][-1] >= 2
    capsys.readouterr()

    resumed = train(None, out, resume=True, progress=False)
    printed = [line.split(",")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("[round")]
    assert printed and printed[0] in ("[round 2", "[round 3")  # on from round 1's or 2's checkpoint, not round 0
    assert run.meta()["resumes"][0]["at_step"] > 0
    assert [e["round"] for e in run.eval_history()] == [0, 1, 2, 3]  # a round the crash cut short is logged once
    # The same clone, best and log as the uninterrupted run, bit for bit (seeded data, restored batch sampler).
    assert [_no_wall(e) for e in run.eval_history()] == [_no_wall(e) for e in RunDir(ref).eval_history()]
    assert _no_wall(resumed) == _no_wall(whole)
    for which in ("final", "best"):
        mine, theirs = _weights(out / which), _weights(ref / which)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), which


def test_resuming_a_finished_bc_run_trains_nothing(tmp_path):
    out = tmp_path / "run"
    summary = train(resolve_config("toy-target", "bc", {"eval_episodes": 2, "bc": {"rounds": 1, "round_episodes": 2}}), out,
                    progress=False)
    run = RunDir(out)
    def files() -> dict:  # but the lock file, which each trainer writes its pid into
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    before = files()
    assert train(None, out, resume=True, progress=False) == summary
    assert files() == before
    assert "resumes" not in run.meta() and [e["round"] for e in run.eval_history()] == [0, 1]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_a_demos_run_resumes_without_its_demos_file_from_anywhere(tmp_path):
    """Round 0 of a --demos run was the file, by the path as typed: a resume after the run moved (or from another
    folder) failed, and had already cut eval.jsonl to nothing; the next resume crashed on the empty log."""
    import shutil

    from policies.demos import record_demos, save_demos

    demos = save_demos(record_demos("toy-reach", None, 10, seed=0, progress=False), tmp_path / "demos.npz")
    out = tmp_path / "run"
    cfg = resolve_config("toy-reach", "bc", {"demos": str(demos), "eval_episodes": 3, "bc": {"rounds": 1, "round_episodes": 2}})
    whole = train(cfg, out, progress=False)
    run = RunDir(out)
    first = run.eval_history()[0]
    # a crash in round 1: its checkpoint, data and the summary never written
    shutil.rmtree(run.round_checkpoint(1))
    (out / "data" / "round_1.npz").unlink()
    (out / "summary.json").unlink()
    run.keep_evals(lambda record: record["round"] == 0)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    out.rename(moved)
    demos.unlink()
    resumed = train(None, moved, resume=True, progress=False)
    history = RunDir(moved).eval_history()
    assert [e["round"] for e in history] == [0, 1] and history[0] == first
    assert _no_wall(resumed) == _no_wall(whole)


def test_a_resume_that_fails_before_training_keeps_the_runs_evaluations(tmp_path):
    """A run by an older genba keeps no round checkpoints, so a resume starts again from its --demos file; when that
    file could not be used, the resume had already cut eval.jsonl to nothing."""
    import shutil

    import pytest

    from policies.demos import DemoError, record_demos, save_demos

    demos = save_demos(record_demos("toy-reach", None, 10, seed=0, progress=False), tmp_path / "demos.npz")
    out = tmp_path / "run"
    train(resolve_config("toy-reach", "bc", {"demos": str(demos), "eval_episodes": 3, "bc": {"rounds": 1, "round_episodes": 2}}),
          out, progress=False)
    for old_layout in ("checkpoints", "data"):  # as an older genba left a run killed after round 1
        shutil.rmtree(out / old_layout)
    (out / "summary.json").unlink()
    logged = (out / "eval.jsonl").read_text()
    demos.write_bytes(b"not a demonstrations file")
    with pytest.raises(DemoError):
        train(None, out, resume=True, progress=False)
    assert (out / "eval.jsonl").read_text() == logged and logged.count("\n") == 2


def test_a_cut_short_meta_json_is_named_not_a_traceback(tmp_path):
    import pytest

    from policies.rundir import RunError

    out = tmp_path / "run"
    train(resolve_config("toy-reach", "bc", {"eval_episodes": 2, "bc": {"rounds": 0, "demo_episodes": 3}}), out, progress=False)
    text = (out / "meta.json").read_text()
    (out / "meta.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunError, match=r"meta.json: cannot be read as the run's record"):
        RunDir(out).meta()
