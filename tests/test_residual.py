"""RL fine-tuning by a residual on a frozen BC clone: it improves on its start, acts, evaluates and exports as the
sum, resumes on the same base, and refuses a base from another cell or layout; the time cost in the reward."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from twin_support import bridge_server

from genba.twin import TwinConfig, TwinError, run_twin
from policies.bundle import load_bundle
from policies.config import ConfigError, resolve_config
from policies.evaluate import evaluate
from policies.policy import load_policy
from policies.run_export import export_run
from policies.rundir import RunError
from policies.snapshot import run_snapshot
from policies.train import train
from sim.env import FactoryEnv
from sim.experts import make_expert


@pytest.fixture(scope="module")
def weak_clone(tmp_path_factory):
    """toy-target cloned with far too few fitting steps: roughly half its guesses miss the tolerance."""
    out = tmp_path_factory.mktemp("clone") / "bc"
    train(resolve_config("toy-target", "bc", {"seed": 0, "bc": {"iterations": 30, "demo_noise": 0.0}}), out, progress=False)
    return out


@pytest.fixture(scope="module")
def residual_run(weak_clone, tmp_path_factory):
    out = tmp_path_factory.mktemp("residual") / "ppo"
    cfg = resolve_config("toy-target", "ppo", {"init": str(weak_clone), "residual": 0.5, "steps": 8192, "init_log_std": -1.5,
                                               "hyperparams": {"clip_range": 0.1}})
    summary = train(cfg, out, progress=False)
    return out, summary


def test_residual_improves_on_its_bc_start(weak_clone, residual_run):
    out, _ = residual_run
    before, _ = evaluate(weak_clone, n=200, seed=5)
    after, _ = evaluate(out, n=200, seed=5)  # the run acts as clone + correction
    assert after.mean_return > before.mean_return + 0.3, (before.line(), after.line())
    assert after.success_rate >= before.success_rate + 0.1, (before.line(), after.line())


def test_residual_starts_exactly_at_its_base(weak_clone, tmp_path):
    cfg = resolve_config("toy-target", "td3", {"init": str(weak_clone), "residual": [0.5], "steps": 100, "eval_freq": 100,
                                               "hyperparams": {"learning_starts": 1000}})  # no update before the end
    out = tmp_path / "td3"
    train(cfg, out, progress=False)
    obs = np.random.default_rng(0).uniform(-1, 1, (50, 1)).astype(np.float32)
    base, combined = load_policy(weak_clone).policy, load_policy(out, "final").policy
    np.testing.assert_allclose([combined.act(o) for o in obs], [base.act(o) for o in obs], atol=1e-6)


def test_residual_bundle_is_base_plus_correction(weak_clone, residual_run, tmp_path):
    out, _ = residual_run
    bundle_dir = export_run(out, tmp_path / "bundle", which="best")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["policy"]["residual"]["scale"] == [0.5] and manifest["training"]["residual"]["scale"] == [0.5]
    policy = load_policy(out).policy
    obs = np.random.default_rng(1).uniform(-1, 1, (300, 1)).astype(np.float32)
    expected = np.array([policy.act(o) for o in obs])
    base = np.array([load_policy(weak_clone).policy.act(o) for o in obs])
    assert np.abs(expected - base).max() > 0.05  # the correction is really in there
    for backend in ("onnx", "torchscript"):
        np.testing.assert_allclose(load_bundle(bundle_dir, backend=backend).act(obs), expected, atol=1e-5, rtol=0)


def test_resume_keeps_the_base(weak_clone, residual_run, tmp_path):
    out, summary = residual_run
    state = run_snapshot(out, "final").state
    assert state["residual"]["base"] == str(run_snapshot(weak_clone, "best").path.resolve())
    more = train(None, out, resume=True, progress=False, max_steps=summary["num_timesteps"] + 1024)
    assert more["num_timesteps"] == summary["num_timesteps"] + 1024
    assert run_snapshot(out, "final").state["residual"] == state["residual"]


def _pair(weak_clone, root):
    """root/bc run (a copy of the clone) and root/ft, a residual run on it that has not moved from its start."""
    shutil.copytree(weak_clone, root / "bc run")
    cfg = resolve_config("toy-target", "td3", {"init": str(root / "bc run"), "residual": [0.5], "steps": 100, "eval_freq": 100,
                                               "hyperparams": {"learning_starts": 1000}})
    train(cfg, root / "ft", progress=False)
    return root / "bc run", root / "ft"


def test_a_run_moved_together_with_its_base_still_finds_it(weak_clone, tmp_path):
    base, ft = _pair(weak_clone, tmp_path / "here")
    obs = np.random.default_rng(2).uniform(-1, 1, (20, 1)).astype(np.float32)
    before = [load_policy(ft, "final").policy.act(o) for o in obs]
    (tmp_path / "here").rename(tmp_path / "there")
    moved = tmp_path / "there" / "ft"
    np.testing.assert_array_equal([load_policy(moved, "final").policy.act(o) for o in obs], before)
    train(None, moved, resume=True, progress=False, max_steps=200)  # resumes on the moved base, and records it
    assert run_snapshot(moved, "final").state["residual"]["base"] == str((tmp_path / "there" / "bc run" / "best").resolve())
    assert export_run(moved, tmp_path / "bundle").is_dir()


def test_a_run_copied_beside_another_clone_still_finds_its_own_base_where_it_was(weak_clone, tmp_path):
    """The relative path was tried alone: a copy of the run next to another policy of the base's name failed the
    checksum although the very base was still at its recorded path."""
    base, ft = _pair(weak_clone, tmp_path / "here")
    obs = np.random.default_rng(3).uniform(-1, 1, (20, 1)).astype(np.float32)
    before = [load_policy(ft, "final").policy.act(o) for o in obs]
    elsewhere = tmp_path / "elsewhere"
    train(resolve_config("toy-target", "bc", {"seed": 1, "bc": {"iterations": 30, "demo_noise": 0.0}}), elsewhere / "bc run",
          progress=False)
    shutil.copytree(ft, elsewhere / "ft")
    np.testing.assert_array_equal([load_policy(elsewhere / "ft", "final").policy.act(o) for o in obs], before)


def test_a_gone_or_replaced_base_is_refused_naming_the_run(weak_clone, tmp_path):
    base, ft = _pair(weak_clone, tmp_path)
    base.rename(tmp_path / "elsewhere")
    with pytest.raises(RunError, match=re.escape(f"{ft}/best: its residual base policy {base.resolve()}/best is gone")):
        load_policy(ft)
    other = tmp_path / "other"  # another clone put where the base was: acting, evaluating or exporting on it is refused
    train(resolve_config("toy-target", "bc", {"seed": 1, "bc": {"iterations": 30, "demo_noise": 0.0}}), other, progress=False)
    shutil.copytree(other, base)
    for use in (lambda: load_policy(ft), lambda: export_run(ft, tmp_path / "bundle")):
        with pytest.raises(RunError, match=re.escape(f"{ft}/best: its residual base policy {base.resolve()}/best changed since training")):
            use()
    assert not (tmp_path / "bundle").exists()


def test_a_run_from_before_base_checksums_loads_its_base_by_path(weak_clone, tmp_path):
    base, ft = _pair(weak_clone, tmp_path)
    state_file = ft / "best" / "state.json"
    state = json.loads(state_file.read_text())
    for key in ("base_sha256", "base_relative"):
        del state["residual"][key]
    state_file.write_text(json.dumps(state))
    obs = np.random.default_rng(3).uniform(-1, 1, (20, 1)).astype(np.float32)
    np.testing.assert_array_equal([load_policy(ft).policy.act(o) for o in obs], [load_policy(base).policy.act(o) for o in obs])


def test_mismatched_init_is_refused(weak_clone, tmp_path):
    with pytest.raises(ConfigError, match=r"--init .*trained on toy-target .*this run is toy-reach"):
        train(resolve_config("toy-reach", "ppo", {"init": str(weak_clone), "residual": 0.5, "steps": 64}), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="residual: a residual learns a correction to the --init policy"):
        resolve_config("toy-target", "ppo", {"residual": 0.5})
    with pytest.raises(ConfigError, match="residual: scales must be numbers > 0"):
        resolve_config("toy-target", "ppo", {"init": str(weak_clone), "residual": [0.5, -1]})
    with pytest.raises(ConfigError, match=r"residual scale: 2 values for an action of 1"):
        train(resolve_config("toy-target", "ppo", {"init": str(weak_clone), "residual": [0.5, 0.5], "steps": 64}), tmp_path / "b",
              progress=False)


def test_time_cost_is_charged_per_step_and_for_the_rest_of_a_failed_episode():
    env = FactoryEnv("conveyor-pick")
    weight = env.scenario.task.reward.time
    assert weight < 0
    env.reset(seed=0)
    reward_with = env.step(np.zeros(5, np.float32))[1]
    env.close()
    free = FactoryEnv(env.scenario.model_copy(update={"task": env.scenario.task.model_copy(
        update={"reward": env.scenario.task.reward.model_copy(update={"time": 0.0})})}))
    free.reset(seed=0)
    assert reward_with == pytest.approx(free.step(np.zeros(5, np.float32))[1] + weight, abs=1e-9)
    # A part let go of mid-carry, outside the bin, ends the episode early: the steps it had left are charged too.
    env = FactoryEnv("conveyor-pick")
    expert = make_expert(env)
    env.reset(seed=0)
    expert.reset()
    steps = 0
    while expert.phase != "carry":
        env.step(expert.act())
        steps += 1
    for _ in range(20):  # 1 s of carrying: clear of the belt, short of the bin
        env.step(expert.act())
        steps += 1
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, 0, -1], np.float32))  # open the gripper
        steps += 1
        done = terminated or truncated
    env.close()
    assert terminated and info["parts_dropped"] == 1
    assert reward <= weight * (1 + env.scenario.max_episode_steps - steps) + env.scenario.task.reward.dropped + 1e-9


def test_bin_sort_fine_tunes_from_its_clone_with_the_presets_residual(tmp_path):
    """The shipped bin-sort preset's with_init block, on a (tiny) clone: a residual run on state observations."""
    bc = tmp_path / "bc"
    train(resolve_config("bin-sort", "bc", {"eval_episodes": 1, "bc": {"demo_episodes": 2, "iterations": 20, "rounds": 0}}), bc,
          progress=False)
    cfg = resolve_config("bin-sort", "ppo", {"init": str(bc), "steps": 256, "eval_episodes": 1,
                                             "hyperparams": {"n_steps": 128, "batch_size": 64}})
    assert cfg.residual == [0.3, 0.3, 0.3, 0.3, 1.0] and cfg.obs_mode == "state"
    summary = train(cfg, tmp_path / "ppo", progress=False)
    assert summary["num_timesteps"] == 256
    assert run_snapshot(tmp_path / "ppo", "final").state["residual"]["scale"] == cfg.residual


def test_a_residual_observes_the_commanded_target_its_clone_never_saw(tmp_path):
    """observe_command on top of a clone trained without it: the base keeps its 33 values, the residual and the
    bundle take 37, and the bundle's evaluation builds the env that gives them."""
    bc = tmp_path / "bc"
    train(resolve_config("conveyor-pick", "bc", {"eval_episodes": 1, "bc": {"demo_episodes": 2, "iterations": 20, "rounds": 0}}), bc,
          progress=False)
    common = {"init": str(bc), "observe_command": True, "steps": 100, "eval_freq": 100, "eval_episodes": 1}
    with pytest.raises(ConfigError, match="observe_command needs a residual run"):
        train(resolve_config("conveyor-pick", "td3", common), tmp_path / "plain", progress=False)
    out = tmp_path / "td3"
    train(resolve_config("conveyor-pick", "td3", {**common, "residual": 0.3, "hyperparams": {"learning_starts": 1000}}), out,
          progress=False)  # no update before the end: the correction is still zero

    env = FactoryEnv("conveyor-pick", observe_command=True)
    obs, _ = env.reset(seed=3)
    observations = []
    for action in np.random.default_rng(0).uniform(-1, 1, (60, 5)).astype(np.float32):
        obs, *_ = env.step(action)
        observations.append(obs)
    env.close()
    observations = np.array(observations)
    assert observations.shape[1] == 37 and np.abs(observations[:, 33:36]).max() > 1e-3  # the arm lags its target
    base, combined = load_policy(bc).policy, load_policy(out, "final").policy
    np.testing.assert_allclose([combined.act(o) for o in observations], [base.act(o[:33]) for o in observations], atol=1e-6)

    bundle_dir = export_run(out, tmp_path / "bundle", which="final")
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["observe_command"] is True
    assert [f["name"] for f in manifest["observation"]["features"]][-2:] == ["tool_target_to_tool", "tool_target_yaw_to_tool"]
    np.testing.assert_allclose(load_bundle(bundle_dir).act(observations), [combined.act(o) for o in observations], atol=1e-5, rtol=0)
    result, _ = evaluate(bundle_dir, n=1, seed=0)  # the env it builds ends with the command, as the bundle needs
    assert result.episodes == 1 and result.env_steps > 0
    with bridge_server(bundle_dir) as endpoint:  # the twin, a controller, sends the command it knows
        report = run_twin(TwinConfig("conveyor-pick", endpoint, episodes=1, speed=0, observe_command=True), log=lambda line: None)
        assert report.control_steps > 0 and report.step_status == {"ok": report.control_steps}
        with pytest.raises(TwinError, match="needs --observe-command"):
            run_twin(TwinConfig("conveyor-pick", endpoint, episodes=1, speed=0), log=lambda line: None)
