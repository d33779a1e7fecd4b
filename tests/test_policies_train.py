"""Training on the toy envs: the agent learns, runs are recorded and never overwritten, save/load is exact,
BC clones the expert and warm-starts RL, exported runs act like their models."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from policies.bundle import load_bundle
from policies.config import ConfigError, parse_overrides, resolve_config
from policies.demos import DemoError, load_demos, record_demos, save_demos
from policies.errors import PolicyError
from policies.evaluate import evaluate, wilson_interval
from policies.run_export import export_run
from policies.rundir import RunError
from policies.snapshot import run_snapshot
from policies.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def td3_run(tmp_path_factory):
    """TD3 on toy-target (the right action is the observation): 2,000 steps, a few seconds."""
    out = tmp_path_factory.mktemp("runs") / "td3"
    cfg = resolve_config("toy-target", "td3", {"seed": 3})
    summary = train(cfg, out, progress=False)
    return out, summary


def test_rl_learns_trivial_task(td3_run):
    out, summary = td3_run
    assert summary["num_timesteps"] == 2000
    # Random actions average a return of ~6.7 (mean |error| 1/3 per step); a learned policy is within 0.1.
    result, _ = evaluate(out, n=30, seed=1)
    assert result.mean_return >= 9.0, result
    assert result.success_rate >= 0.9, result


def test_run_directory_records_config_and_provenance(td3_run):
    out, _ = td3_run
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["algo"], cfg["seed"], cfg["steps"], cfg["hyperparams"]["batch_size"]) == ("td3", 3, 2000, 64)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 3 and "stable-baselines3" in meta["versions"] and "torch" in meta["versions"]
    assert meta["git_revision"] is None or len(meta["git_revision"].split("-")[0]) == 40
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["steps"] for e in evals] == [500, 1000, 1500, 2000]  # eval_freq 500 from the preset
    assert any((out / "tb").rglob("events.out.tfevents.*"))


def test_existing_run_is_never_overwritten(td3_run):
    out, _ = td3_run
    before = (out / "config.yaml").read_text()
    with pytest.raises(PolicyError, match="already exists; pass --resume"):
        train(resolve_config("toy-target", "td3", {}), out, progress=False)
    assert (out / "config.yaml").read_text() == before


def test_save_load_gives_identical_actions(td3_run):
    out, _ = td3_run
    snap = run_snapshot(out, "final")
    a, b = snap.load_model(), snap.load_model()
    obs = np.linspace(-1, 1, 101, dtype=np.float32)[:, None]
    assert np.array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    assert snap.state["num_timesteps"] == 2000 and a.num_timesteps == 2000


def test_a_damaged_snapshot_is_named_not_a_traceback(td3_run, tmp_path):
    run = shutil.copytree(td3_run[0], tmp_path / "run")
    model = run / "final" / "model.zip"
    model.write_bytes(model.read_bytes()[:1000])  # truncated: SB3's ValueError, from a BadZipFile, came out whole
    with pytest.raises(RunError, match=r"final/model.zip: cannot load it: .*wasn't a zip-file"):
        run_snapshot(run, "final").load_model()
    (run / "final" / "state.json").write_text("{algo: td3")
    with pytest.raises(RunError, match=r"final/state.json: cannot load it: Expecting property name"):
        run_snapshot(run, "final")


def test_exported_run_matches_model(td3_run, tmp_path):
    out, _ = td3_run
    bundle_dir = export_run(out, tmp_path / "bundle", which="final")
    model = run_snapshot(out, "final").load_model()
    obs = np.random.default_rng(0).uniform(-1, 1, (1000, 1)).astype(np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    for backend in ("onnx", "torchscript"):
        np.testing.assert_allclose(load_bundle(bundle_dir, backend=backend).act(obs), expected, atol=1e-5, rtol=0)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 2000 and manifest["training"]["algo"] == "td3"
    assert manifest["scenario"]["name"] == "toy-target" and manifest["control_hz"] == 10.0


def test_bc_clones_expert_and_warm_starts_rl(tmp_path):
    bc_out = tmp_path / "bc"
    summary = train(resolve_config("toy-reach", "bc", {"seed": 0}), bc_out, progress=False)
    assert summary["best_success"] >= 0.9, summary  # the straight-line expert is easy to clone
    bc_model = run_snapshot(bc_out, "best").load_model()

    # RL from the cloned actor, with its own episodes in the buffer and the actor frozen while the critic
    # warms up: after 200 steps of SAC updates it still acts exactly like the BC policy.
    rl_cfg = resolve_config("toy-reach", "sac", {"init": str(bc_out), "steps": 200, "eval_episodes": 1, "init_rollout_episodes": 5,
                                                 "init_actor_freeze": 200, "hyperparams": {"learning_starts": 0}})
    rl_out = tmp_path / "rl"
    train(rl_cfg, rl_out, progress=False)
    rl_model = run_snapshot(rl_out, "final").load_model()
    obs = {k: np.random.default_rng(1).uniform(-1, 1, (64, 2)).astype(np.float32) for k in ("observation", "achieved_goal", "desired_goal")}
    bc_vn, rl_vn = run_snapshot(bc_out, "best").load_vecnormalize(), run_snapshot(rl_out, "final").load_vecnormalize()
    np.testing.assert_allclose(rl_model.predict(rl_vn.normalize_obs(obs), deterministic=True)[0],
                               bc_model.predict(bc_vn.normalize_obs(obs), deterministic=True)[0], atol=1e-6)
    assert torch.allclose(rl_model.actor.log_std.bias, torch.full_like(rl_model.actor.log_std.bias, -2.0))
    assert rl_model.num_timesteps == 200 and rl_model._n_updates >= 150  # the critic did train meanwhile


def test_bc_from_demos_file(tmp_path):
    path = save_demos(record_demos("toy-target", None, 10, seed=0, progress=False), tmp_path / "d.npz")
    demos = load_demos(path)
    assert len(demos) == 100 and demos.n_episodes == 10 and demos.episode_success.dtype == bool
    np.testing.assert_array_equal(demos.actions, demos.obs)  # toy-target's expert echoes the observation
    summary = train(resolve_config("toy-target", "bc", {"demos": str(path)}), tmp_path / "run", progress=False)
    assert summary["num_timesteps"] == 0  # no env steps of its own: the data came from the file
    assert summary["final_eval"]["mean_return"] >= 9.0
    with pytest.raises(PolicyError, match="observation layout"):
        train(resolve_config("toy-reach", "bc", {"demos": str(path)}), tmp_path / "wrong", progress=False)


def test_a_bad_demonstrations_file_is_named_with_what_is_wrong(tmp_path):
    good = save_demos(record_demos("toy-target", None, 2, seed=0, progress=False), tmp_path / "good.npz")
    (tmp_path / "empty.npz").write_bytes(b"")  # np.load's EOFError became click's bare "Aborted!"
    with pytest.raises(DemoError, match=r"empty.npz: not a genba demonstrations file \(No data left in file\)"):
        load_demos(tmp_path / "empty.npz")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])  # BadZipFile came out as a traceback
    with pytest.raises(DemoError, match=r"cut.npz: not a genba demonstrations file"):
        load_demos(tmp_path / "cut.npz")
    demos = load_demos(good)
    demos.actions[5, 0] = np.nan  # failed inside torch's loss
    with pytest.raises(DemoError, match=r"nan.npz: actions holds NaN or inf \(row 5\)"):
        load_demos(save_demos(demos, tmp_path / "nan.npz"))


def test_config_layers_and_errors():
    cfg = resolve_config("toy-target", "sac", parse_overrides(["hyperparams.batch_size=32", "steps=123"]))
    assert (cfg.steps, cfg.hyperparams["batch_size"], cfg.hyperparams["learning_starts"], cfg.eval_freq) == (123, 32, 100, 500)
    # PyYAML alone read 3e-4 as a string, and the run failed after making its directory
    cfg = resolve_config("toy-target", "sac", parse_overrides(["hyperparams.learning_rate=3e-4"]))
    assert cfg.hyperparams["learning_rate"] == 3e-4
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        resolve_config("toy-target", "sac", {"stepz": 5})
    with pytest.raises(ConfigError, match="--algo 'sacc' is not supported.*did you mean 'sac'"):
        resolve_config("toy-target", "sacc", {})
    with pytest.raises(ConfigError, match="--her needs an off-policy algorithm"):
        resolve_config("toy-target", "ppo", {"her": True})
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["steps"])
    with pytest.raises(ConfigError, match="--init .*/runs/x: behaviour cloning learns from the scripted expert"):
        resolve_config("toy-target", "bc", {"init": "runs/x"})  # was ignored without a word


def test_a_bad_init_leaves_no_run_directory_behind(tmp_path):
    """It used to fail after creating one: the retry was refused ('already exists'), and --resume repeated the bad --init."""
    with pytest.raises(PolicyError, match="--init .*nope: not a run directory or snapshot"):
        train(resolve_config("toy-target", "sac", {"init": str(tmp_path / "nope")}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("steps=abc", "steps must be an integer, got 'abc'"),  # was a TypeError at the first comparison
    ("steps=1.5", "steps must be an integer, got 1.5"),  # was silently rounded up to 2 steps
    ("seed=abc", "seed must be an integer, got 'abc'"),
    ("hyperparams=5", "hyperparams must be a mapping, got 5"),  # was a TypeError inside the model builder
    ("hyperparams.batch_size=abc", "hyperparams.batch_size must be an integer >= 1, got 'abc'"),  # failed at the 1st update
    ("bc.net_arch=[64, x]", "bc.net_arch must be a list of integers, got [64, 'x']"),
    ("stop_at_success=.nan", "stop_at_success must be a finite number or null, got nan"),
    ("bc=3", "bc must be a mapping of settings, got 3"),
    ("hyperparams.learning_rate=.nan", "hyperparams.learning_rate must be a finite number > 0, got nan"),  # torch's ValueError
    ("hyperparams.gamma=5.0", "hyperparams.gamma must be a finite number > 0 and <= 1, got 5.0"),  # trained silently
    # models.schedule refused these after the run directory was made
    ("hyperparams.learning_rate=abc", "hyperparams.learning_rate: 'abc' is not a number or lin_<number>"),
    ("hyperparams.clip_range=lin_-0.2", "hyperparams.clip_range must be a finite number > 0, got 'lin_-0.2'"),
    ("hyperparams.policy_kwargs={net_arch: [-5]}", "hyperparams.policy_kwargs.net_arch must list layer sizes >= 1, got [-5]"),
])
def test_a_setting_of_the_wrong_type_is_refused_before_training(override, message):
    with pytest.raises(ConfigError, match=re.escape(f"toy-target.yaml with the command line's settings: {message}")):
        resolve_config("toy-target", "sac", parse_overrides([override]))


def test_wilson_interval_known_values():
    # Reference values (Wilson 1927; e.g. statsmodels proportion_confint(method="wilson")).
    lo, hi = wilson_interval(95, 100)
    assert lo == pytest.approx(0.88825, abs=1e-4) and hi == pytest.approx(0.97846, abs=1e-4)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.16113, abs=1e-4)
    lo, hi = wilson_interval(50, 50)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.92865, abs=1e-4)
    for n in range(1, 400):  # the rate lies inside its interval exactly, rounding included (a chart's error bars)
        for k in (0, 1, n - 1, n):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_ppo_in_subprocess_envs_with_normalization_exports_exactly(tmp_path):
    """--envs 2 (SubprocVecEnv) + VecNormalize: the run's statistics reach the bundle, which matches the model."""
    out = tmp_path / "ppo"
    cfg = resolve_config("toy-target", "ppo", {"n_envs": 2, "steps": 512, "eval_episodes": 2})
    summary = train(cfg, out, progress=False)
    assert summary["num_timesteps"] == 512  # one rollout of n_steps=256 in each of the 2 envs
    snap = run_snapshot(out, "final")
    vn = snap.load_vecnormalize()
    assert vn is not None and vn.obs_rms.count > 500  # statistics were gathered from both envs
    bundle = load_bundle(export_run(out, tmp_path / "b", which="final"))
    obs = np.random.default_rng(2).uniform(-1, 1, (1000, 1)).astype(np.float32)
    expected = snap.load_model().predict(vn.normalize_obs(obs), deterministic=True)[0]
    np.testing.assert_allclose(bundle.act(obs), expected, atol=1e-5, rtol=0)


def test_the_observation_mode_is_checked_and_reaches_the_training_env(tmp_path):
    with pytest.raises(PolicyError, match=r"obs_mode 'percieved': use one of state, perceived, pixels \(did you mean 'perceived'\?\)"):
        resolve_config("toy-target", "ppo", {"obs_mode": "percieved"})
    cfg = resolve_config("toy-target", "ppo", {"obs_mode": "perceived", "steps": 64})
    with pytest.raises(PolicyError, match="toy env 'toy-target' has no cameras; drop --obs perceived"):
        train(cfg, tmp_path / "run", progress=False)


def test_a_run_that_fails_before_training_leaves_nothing_to_block_a_retry(tmp_path):
    """It left config.yaml and meta.json, so the retry met 'already exists; pass --resume', and --resume repeated the
    error: the folder had to be deleted by hand."""
    cfg = resolve_config("reach", "sac", {"obs_mode": "perceived", "steps": 10})  # reach has no perception camera
    for out, existed in ((tmp_path / "new-run", False), (tmp_path / "empty-dir", True)):
        if existed:
            out.mkdir()
        with pytest.raises(Exception, match="needs a camera with `use: \\[perception\\]`"):
            train(cfg, out, progress=False)
        assert out.is_dir() == existed and not (existed and any(out.iterdir()))  # a folder the user made stays, empty
    summary = train(resolve_config("reach", "sac", {"steps": 10, "eval_episodes": 1}), tmp_path / "new-run", progress=False)
    assert summary["num_timesteps"] == 10
