"""Crash safety: a training process SIGKILLed mid-run resumes to the full step count with counters,
replay buffer and LR schedule intact; a snapshot write killed halfway is never visible."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from policies.rundir import RunDir, atomic_dir, atomic_write_text
from policies.snapshot import open_snapshot, run_snapshot

REPO = Path(__file__).resolve().parents[1]
STEPS, CKPT_EVERY, LR0 = 3000, 300, 0.002


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "genba", "train", "toy-target", "--out", str(out), "--no-progress", *extra]


def _wait_for_checkpoint(run: RunDir, proc: subprocess.Popen, min_step: int, timeout: float = 90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = run.latest_checkpoint()
        if latest is not None and int(latest.name.split("_")[1]) >= min_step:
            return latest
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared in time")


@pytest.mark.slow
def test_sigkill_then_resume_reaches_full_step_count(tmp_path):
    out = tmp_path / "run"
    run = RunDir(out)
    proc = subprocess.Popen(
        _train_cmd(out, "--algo", "td3", "--steps", str(STEPS), "--seed", "1", "--set", f"checkpoint_freq={CKPT_EVERY}",
                   "--set", "eval_freq=1000", "--set", f"hyperparams.learning_rate=lin_{LR0}"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(run, proc, min_step=2 * CKPT_EVERY)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert run.summary() is None  # it really died mid-run

    # Every visible checkpoint is complete and loads (model and replay buffer).
    killed_at = []
    for ckpt in run.complete_checkpoints():
        snap = open_snapshot(ckpt)
        model = snap.load_model()
        assert model.num_timesteps == snap.state["num_timesteps"] == int(ckpt.name.split("_")[1])
        killed_at.append(model.num_timesteps)
    resumed_from = run.latest_checkpoint()
    start = int(resumed_from.name.split("_")[1])
    assert start == max(killed_at) and start < STEPS

    done = subprocess.run(_train_cmd(out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    summary = run.summary()
    assert summary["num_timesteps"] == STEPS and summary["target_steps"] == STEPS
    final = run_snapshot(out, "final").load_model()
    assert final.num_timesteps == STEPS
    assert [r["at_step"] for r in run.meta()["resumes"]] == [start]

    # The first checkpoint after the resume: its replay buffer holds the pre-crash transitions too, and the
    # linear LR schedule continued from the saved step count (not restarted at 1.0).
    after = next(c for c in run.complete_checkpoints() if int(c.name.split("_")[1]) > start)
    step = int(after.name.split("_")[1])
    snap = open_snapshot(after)
    model = snap.load_model(env=None)
    assert snap.load_buffer_into(model) and model.replay_buffer.size() == step
    lr = model.actor.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(LR0 * (1 - step / STEPS), abs=LR0 * 2 / STEPS)
    # eval.jsonl continued with the step counter (evaluations at 1000, 2000, 3000 in total, none repeated)
    steps_logged = [e["steps"] for e in run.eval_history()]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == STEPS

    # Resuming a finished run is a no-op that says so in the summary, not a second training.
    again = subprocess.run(_train_cmd(out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and run.summary() == summary


def test_snapshot_write_killed_halfway_is_invisible(tmp_path):
    """A process SIGKILLs itself in the middle of writing a checkpoint: readers still see the old one."""
    run = RunDir(tmp_path)
    code = textwrap.dedent(f"""
        import os, signal, json
        from pathlib import Path
        from policies.rundir import RunDir, atomic_dir
        run = RunDir({str(tmp_path)!r})
        old = run.checkpoint_dir(100)
        with atomic_dir(old) as d:
            (d / "model.zip").write_bytes(b"complete" * 1000)
            (d / "state.json").write_text(json.dumps({{"num_timesteps": 100}}))
        run.mark_latest(old, keep=2)
        with atomic_dir(run.checkpoint_dir(200)) as d:
            with open(d / "model.zip", "wb") as f:
                f.write(b"half" * 1000)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in run.complete_checkpoints()] == ["step_000000000100"]
    assert run.latest_checkpoint().name == "step_000000000100"
    assert (run.latest_checkpoint() / "model.zip").read_bytes() == b"complete" * 1000
    leftovers = list(run.checkpoints.glob(".tmp-*"))
    assert leftovers  # the interrupted write is there, hidden ...
    run.clean_temp()
    assert not list(run.checkpoints.glob(".tmp-*"))  # ... and a resume removes it
    assert json.loads((run.latest_checkpoint() / "state.json").read_text()) == {"num_timesteps": 100}


def test_a_resume_removes_round_data_a_crash_left_half_written(tmp_path):
    """data/ was not swept: a pixel round killed while writing left its temp folder (about 3.5 MB an episode) for good."""
    run = RunDir(tmp_path)
    code = textwrap.dedent(f"""
        import os, signal
        from policies.rundir import RunDir, atomic_dir
        with atomic_dir(RunDir({str(tmp_path)!r}).path / "data" / "round_1") as d:
            (d / "steps.npz").write_bytes(b"half" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    data = tmp_path / "data"
    (data / ".tmp-round_2.npz.4242.k3j9x0.npz").write_bytes(b"")  # save_demos' temp file (rundir.temp_beside)
    (data / "round_0.npz").write_bytes(b"kept")
    assert len(list(data.iterdir())) == 3
    run.clean_temp()
    assert [p.name for p in data.iterdir()] == ["round_0.npz"]


def test_the_next_write_to_a_target_removes_what_a_killed_writer_left_and_keeps_a_live_writers(tmp_path):
    """A SIGKILLed export (or `demos -o`) left its hidden temp beside the target for good; only a run's resume swept."""
    target = tmp_path / "bundle"
    write = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from policies.rundir import atomic_dir
        with atomic_dir(Path({str(target)!r})) as d:
            (d / "model.onnx").write_bytes(b"half" * 1000)
            print("writing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL) if sys.argv[1] == "die" else sys.stdin.readline()
    """)
    killed = subprocess.Popen([sys.executable, "-c", write, "die"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert killed.wait(timeout=60) == -signal.SIGKILL

    def writers() -> list[int]:  # the pid in each .tmp-bundle.PID.RANDOM
        return sorted(int(p.name.split(".")[2]) for p in tmp_path.glob(".tmp-bundle.*"))

    assert writers() == [killed.pid]
    live = subprocess.Popen([sys.executable, "-c", write, "wait"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline() == "writing\n"
        assert writers() == [live.pid]  # its own write swept the dead one's
        with atomic_dir(target) as d:
            (d / "model.onnx").write_bytes(b"whole")
        assert writers() == [live.pid]  # a live writer's is its write in progress
        assert (target / "model.onnx").read_bytes() == b"whole"
    finally:
        live.kill()
        live.wait()


def test_a_write_removes_only_its_own_targets_dead_temporaries(tmp_path):
    """A temp of NAME.999999998 written by a live process reads like a temp of NAME by a dead pid: it is not NAME's, and stays."""
    import os

    from policies.rundir import sweep_stale_temps

    dead = tmp_path / ".tmp-a.999999999.abcdefgh"  # no such pid
    others = [tmp_path / f".tmp-a.999999998.{os.getpid()}.zzzzzzzz", tmp_path / ".tmp-ab.999999999.abcdefgh"]
    for p in (dead, *others):
        p.write_text("x")
    sweep_stale_temps(tmp_path / "a")
    assert sorted(tmp_path.iterdir()) == sorted(others)


def test_files_with_names_near_the_255_byte_limit_are_written(tmp_path):
    """The temp beside a target is longer than its name: a 250-byte name failed with ENAMETOOLONG."""
    atomic_write_text(tmp_path / ("x" * 250), "text")
    with atomic_dir(tmp_path / ("é" * 125)) as d:  # 250 bytes of UTF-8: the cut must not split a character
        (d / "f").write_text("in")
    assert (tmp_path / ("x" * 250)).read_text() == "text" and (tmp_path / ("é" * 125) / "f").read_text() == "in"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 250, "é" * 125])


def test_resume_extends_a_finished_run_from_its_end(tmp_path):
    """A finished run keeps a checkpoint at its last step, so `--resume --steps MORE` continues from there."""
    from policies.config import resolve_config
    from policies.train import train

    out = tmp_path / "run"
    train(resolve_config("toy-target", "td3", {"steps": 400, "checkpoint_freq": 10_000, "eval_freq": 10_000, "eval_episodes": 2}),
          out, progress=False)
    summary = train(None, out, resume=True, progress=False, max_steps=600)
    run = RunDir(out)
    assert summary["num_timesteps"] == 600 and run.config().steps == 600
    assert [r["at_step"] for r in run.meta()["resumes"]] == [400]
    assert [e["steps"] for e in run.eval_history()] == [400, 600]
    snap = open_snapshot(run.latest_checkpoint())
    model = snap.load_model()
    assert snap.load_buffer_into(model) and model.replay_buffer.size() == 600


def test_wall_clock_limit_ends_a_run_and_resume_with_steps_lifts_it(tmp_path):
    """max_wall_s stops a run early, evaluated and checkpointed; `--resume --steps N` then trains on to N."""
    from policies.config import resolve_config
    from policies.train import train

    out = tmp_path / "run"
    cfg = resolve_config("toy-target", "td3", {"steps": 1_000_000, "max_wall_s": 3.0, "checkpoint_freq": 100_000,
                                                "eval_freq": 100_000, "eval_episodes": 2})
    summary = train(cfg, out, progress=False)
    stopped_at = summary["num_timesteps"]
    assert summary["stopped_early"] and 0 < stopped_at < 1_000_000 and summary["wall_s"] < 30
    run = RunDir(out)
    assert [e["steps"] for e in run.eval_history()] == [stopped_at]  # the last policy is evaluated once
    assert open_snapshot(run.latest_checkpoint()).state["num_timesteps"] == stopped_at
    more = train(None, out, resume=True, progress=False, max_steps=stopped_at + 300)
    assert more["num_timesteps"] == stopped_at + 300 and not more["stopped_early"]
    assert run.config().max_wall_s is None


def test_the_revision_check_leaves_the_git_index_alone(tmp_path, monkeypatch):
    """A run records its git revision while the user may be committing: the check must not take the index lock
    (a killed `git status` left .git/index.lock behind). A plain status rewrites a stale index; this one must not."""
    import os

    from policies import rundir

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a\n")
    git("add", "f.txt")
    git("commit", "-qm", "one")
    later = time.time() + 5
    os.utime(tmp_path / "f.txt", (later, later))  # same content, new mtime: the index's stat data is stale
    index = (tmp_path / ".git" / "index").read_bytes()
    monkeypatch.setattr(rundir, "REPO_ROOT", tmp_path)
    assert rundir.git_revision() == git("rev-parse", "HEAD").strip()  # clean: the content did not change
    assert (tmp_path / ".git" / "index").read_bytes() == index
    (tmp_path / "f.txt").write_text("b\n")
    assert rundir.git_revision().endswith("-dirty")


def test_an_rl_run_killed_after_an_evaluation_past_its_checkpoint_logs_each_evaluation_once(tmp_path):
    """SIGKILL after the 1,500-step evaluation, the checkpoint at 1,000: the resumed run redoes 1,000-1,500 and its
    evaluation at 1,500 replaces the lost one in eval.jsonl; best_success names what best/ holds."""
    from policies.snapshot import best_eval

    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(out, "--algo", "td3", "--steps", "2000", "--seed", "2", "--set", "checkpoint_freq=1000",
                                       "--set", "eval_freq=500", "--set", "eval_episodes=5"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "1,500 steps" in line:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    run = RunDir(out)
    assert run.summary() is None and open_snapshot(run.latest_checkpoint()).state["num_timesteps"] == 1000
    assert [e["steps"] for e in run.eval_history()] == [500, 1000, 1500]

    done = subprocess.run(_train_cmd(out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [e["steps"] for e in run.eval_history()] == [500, 1000, 1500, 2000]
    assert run.summary()["best_success"] == best_eval(run)["success_rate"]
    # TensorBoard as well: the lost evaluation at 1,500 is not shown beside the resumed run's (it was, from SB3's logger).
    tb = EventAccumulator(str(run.tensorboard / "sb3_1"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("eval/success_rate")] == \
        [(e["steps"], pytest.approx(e["success_rate"])) for e in run.eval_history()]
    assert [p.name for p in run.tensorboard.iterdir()] == ["sb3_1"]


def test_a_best_saved_after_the_resumed_checkpoint_is_kept_and_named_by_the_summary(tmp_path):
    """A crash after best/ was saved and before the next checkpoint: best/ holds a policy of the lost stretch. The resumed
    run keeps it (a worse evaluation after the resume does not replace it) and its summary's best_success is its."""
    from policies.config import resolve_config
    from policies.snapshot import best_eval
    from policies.train import train

    out = tmp_path / "run"
    train(resolve_config("toy-target", "td3", {"steps": 1500, "seed": 1, "checkpoint_freq": 200, "keep_checkpoints": 10,
                                                "eval_freq": 1500, "eval_episodes": 10}), out, progress=False)
    run = RunDir(out)
    lost = best_eval(run)
    assert lost["steps"] == 1500
    # The crash: after the evaluation at 1,500 saved best/, before any later checkpoint, final or summary.
    early = run.checkpoint_dir(200)
    for later in run.complete_checkpoints():
        if later != early:
            shutil.rmtree(later)
    run.mark_latest(early, keep=10)
    shutil.rmtree(run.final)
    (out / "summary.json").unlink()
    best_model = (run.best / "model.zip").read_bytes()

    summary = train(None, out, resume=True, progress=False, max_steps=400)  # evaluates a 400-step policy
    assert [e["steps"] for e in run.eval_history()] == [400]
    assert run.eval_history()[0]["success_rate"] < lost["success_rate"]  # the case this test is about
    assert (run.best / "model.zip").read_bytes() == best_model and best_eval(run) == lost
    assert summary["best_success"] == lost["success_rate"]


def test_a_run_killed_after_its_final_checkpoint_finishes_without_evaluating_again(tmp_path):
    """Killed between the final checkpoint and the summary: the resume has no step left; it writes final/ and the summary
    from the evaluation already logged at that step (it failed on the callback's missing model, and would log it twice)."""
    from policies.config import resolve_config
    from policies.train import train

    out = tmp_path / "run"
    whole = train(resolve_config("toy-target", "td3", {"steps": 400, "checkpoint_freq": 10_000, "eval_freq": 10_000,
                                                       "eval_episodes": 2}), out, progress=False)
    run = RunDir(out)
    shutil.rmtree(run.final)
    (out / "summary.json").unlink()
    summary = train(None, out, resume=True, progress=False)
    assert [e["steps"] for e in run.eval_history()] == [400]
    assert summary["final_eval"] == whole["final_eval"] and summary["num_timesteps"] == 400
    assert run_snapshot(out, "final").load_model().num_timesteps == 400


def test_a_run_being_trained_refuses_a_second_trainer(tmp_path):
    """Two --resume of one run (a job thought dead) both trained, writing checkpoints, best/ and eval.jsonl over
    each other; the second now stops at once, naming the first's pid, and touches nothing."""
    import os

    from policies.config import resolve_config
    from policies.rundir import RunError
    from policies.train import train

    out = tmp_path / "run"
    train(resolve_config("toy-target", "td3", {"steps": 200, "checkpoint_freq": 10_000, "eval_freq": 10_000, "eval_episodes": 2}),
          out, progress=False)
    run = RunDir(out)
    before = run.eval_history()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from policies.rundir import RunDir, atomic_dir, atomic_write_text
        with RunDir({str(out)!r}).training_lock():
            print("locked", flush=True)
            time.sleep(60)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=rf"{out} is being trained by another process \(pid {holder.pid}\)"):
            train(None, out, resume=True, progress=False, max_steps=400)
        assert run.eval_history() == before and run.config().steps == 200
    finally:
        holder.kill()
        holder.wait(10)
    summary = train(None, out, resume=True, progress=False, max_steps=400)  # the holder's death dropped its lock
    assert summary["num_timesteps"] == 400 and os.path.exists(out / ".training.lock")
