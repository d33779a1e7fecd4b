"""Bundle actions equal the live SB3 model's deterministic actions (ONNX and TorchScript, every algo).

The reference is what a Python user of SB3 would run: VecNormalize.normalize_obs, then
model.predict(deterministic=True). The bundle gets the raw observation (Dict obs flattened in the
documented order observation, achieved_goal, desired_goal) and must match within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import TQC
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from stable_baselines3.her import HerReplayBuffer

from policies.bundle import load_bundle
from policies.export import export_bundle
from policies.features import DICT_OBS_ORDER, flatten_obs
from policies.models import silent_logger
from policies.toy_envs import PointReachEnv, TargetEnv

torch.set_num_threads(1)
N_OBS = 1000
TOL = 1e-5


class WideTargetEnv(TargetEnv):
    """TargetEnv with an offset, unevenly scaled observation and a non-unit action box.

    Non-trivial VecNormalize statistics and action unscaling are then visible in the parity check.
    """

    def __init__(self):
        super().__init__(dim=3)
        self.observation_space = spaces.Box(np.array([-5, 0, 10], np.float32), np.array([5, 1, 30], np.float32))
        self.action_space = spaces.Box(np.array([-2, -1, 0], np.float32), np.array([2, 1, 0.5], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        _, r, term, trunc, info = super().step(np.zeros(3))
        return self.observation_space.sample(), r, term, trunc, info


def _vecnormalized(env_fn) -> VecNormalize:
    venv = VecNormalize(DummyVecEnv([env_fn]), norm_reward=False, clip_obs=2.0)
    venv.seed(0)
    venv.reset()
    for _ in range(200):  # gather statistics, so mean/std differ from 0/1
        venv.step(np.array([venv.action_space.sample()]))
    return venv


def _make(algo: str, venv, her: bool):
    policy = "MultiInputPolicy" if isinstance(venv.observation_space, spaces.Dict) else "MlpPolicy"
    kw = dict(policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    if algo == "ppo":
        model = PPO(policy, venv, n_steps=32, batch_size=32, **kw)
        with torch.no_grad():  # a wide action head, so SB3's clip to the action box is exercised
            model.policy.action_net.weight.mul_(1000.0)
        return model
    cls = {"sac": SAC, "td3": TD3, "tqc": TQC}[algo]
    if her:
        kw["replay_buffer_class"] = HerReplayBuffer
    return cls(policy, venv, learning_starts=40, batch_size=32, buffer_size=1000, **kw)


def _raw_observations(space, n: int) -> np.ndarray | dict:
    space.seed(123)
    if isinstance(space, spaces.Dict):
        return {k: np.stack([space[k].sample() for _ in range(n)]) for k in space.spaces}
    return np.stack([space.sample() for _ in range(n)])


CASES = [(algo, "box") for algo in ("ppo", "sac", "td3", "tqc")] + [(algo, "her") for algo in ("sac", "td3", "tqc")] + [("ppo", "dict")]


@pytest.mark.parametrize("algo,obs_kind", CASES)
def test_bundle_matches_sb3_deterministic_actions(tmp_path, algo, obs_kind):
    env_fn = WideTargetEnv if obs_kind == "box" else PointReachEnv
    venv = _vecnormalized(env_fn)
    model = _make(algo, venv, her=obs_kind == "her")
    if algo != "ppo":
        model.set_logger(silent_logger())
        model.learn(100)  # a few gradient steps move the weights off their initialisation
    bundle_dir = export_bundle(model, tmp_path / "b", feature_spec=venv.envs[0].unwrapped.feature_spec(), vecnormalize=venv)

    raw = _raw_observations(venv.observation_space, N_OBS)
    expected, _ = model.predict(venv.normalize_obs(raw), deterministic=True)
    flat = flatten_obs(raw)
    if obs_kind != "box":
        assert np.array_equal(flat[:, :2], raw[DICT_OBS_ORDER[0]]) and np.array_equal(flat[:, 4:], raw[DICT_OBS_ORDER[2]])
    for backend in ("onnx", "torchscript"):
        bundle = load_bundle(bundle_dir, backend=backend)
        got = bundle.act(flat)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0, err_msg=f"{algo}/{obs_kind}/{backend}")
        # a single observation gives the same action as its row of the batch
        np.testing.assert_allclose(bundle.act(flat[7]), expected[7], atol=TOL, rtol=0)
    if algo == "ppo" and obs_kind == "box":  # the test only proves clipping if some actions hit the box
        low, high = venv.action_space.low, venv.action_space.high
        assert np.any(np.isclose(expected, low)) and np.any(np.isclose(expected, high))


def test_bundle_without_vecnormalize_and_feature_spec(tmp_path):
    """A freshly initialised model with no run dir, no statistics and no feature spec still exports and matches."""
    model = SAC("MlpPolicy", TargetEnv(dim=4), policy_kwargs={"net_arch": [16]}, seed=1, device="cpu")
    bundle = load_bundle(export_bundle(model, tmp_path / "b", feature_spec=None))
    obs = np.random.default_rng(0).uniform(-1, 1, (N_OBS, 4)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(bundle.act(obs), expected, atol=TOL, rtol=0)
    assert bundle.manifest["observation"]["features"][0]["name"] == "obs"
    assert bundle.manifest["policy"]["observation_normalization"] is None
