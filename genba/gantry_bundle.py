"""The three-axis gantry of bridge/gantry.py as a Gymnasium env, and real policy bundles for it.

The bridge's tests, its latency bench and the protocol document need a real bundle (ONNX + TorchScript +
manifest) whose robot has hand-computable kinematics. This module builds one from a freshly initialised
SB3 PPO MLP, with torch and SB3; controllers never import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO

from bridge.gantry import (
    ACT_DIM,
    JOINT_LOWER,
    JOINT_UPPER,
    OBS_DIM,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    action_scale,
    feature_spec,
    forward_kinematics,
)
from policies.bundle_format import is_bundle
from policies.export import export_bundle


class GantryReachEnv(gym.Env):
    """Move the tool to a goal; observation (q, goal), action normalized joint deltas."""

    metadata = {"render_modes": []}

    def __init__(self, episode_steps: int = 60, tolerance: float = 0.02) -> None:
        self.episode_steps, self.tolerance = episode_steps, tolerance
        high = np.concatenate([np.maximum(np.abs(JOINT_LOWER), JOINT_UPPER), np.ones(3)]).astype(np.float32)
        self.observation_space = spaces.Box(-high, high, (OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), dtype=np.float32)
        self._q = np.zeros(3)
        self._goal = np.zeros(3)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._q, self._goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._q = self.np_random.uniform(JOINT_LOWER + 0.1, JOINT_UPPER - 0.1)
        self._goal = self.np_random.uniform(WORKSPACE_LOW + 0.05, WORKSPACE_HIGH - 0.05)
        return self._obs(), {}

    def step(self, action):
        delta = np.clip(action, -1.0, 1.0) * action_scale()
        self._q = np.clip(self._q + delta, JOINT_LOWER, JOINT_UPPER)
        distance = float(np.linalg.norm(forward_kinematics(self._q) - self._goal))
        self._t += 1
        success = distance < self.tolerance
        return self._obs(), -distance, success, self._t >= self.episode_steps, {"is_success": success}

    def feature_spec(self) -> dict[str, Any]:
        return feature_spec()


def export_gantry_bundle(out_dir, name: str = "gantry-reach", seed: int = 0) -> Path:
    """A real bundle (ONNX + TorchScript + manifest) of a freshly initialised SB3 PPO MLP for the gantry."""
    torch.manual_seed(seed)
    env = GantryReachEnv()
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", n_steps=64, batch_size=64)
    return export_bundle(model, out_dir, feature_spec=env.feature_spec(), name=name, overwrite=True)


def cached_gantry_bundle(directory, name: str = "gantry-reach") -> Path:
    """``export_gantry_bundle`` into directory/name unless a bundle is already there (test sessions)."""
    path = Path(directory) / name
    if not is_bundle(path):
        export_gantry_bundle(path, name=name)
    return path


def export_gantry_chunk_bundle(out_dir, chunk: int = 4, name: str = "gantry-chunk", seed: int = 0) -> Path:
    """A real chunked bundle for the gantry: a fresh PPO MLP giving ``chunk`` actions per observation.

    Same observation, action and spec hash as the single-action gantry bundle; the graph's output is
    chunk x 3 values (bridge tests of chunk requests and of single-action controllers against it).
    """
    torch.manual_seed(seed)
    env = GantryReachEnv()
    env.action_space = spaces.Box(-1.0, 1.0, (chunk * ACT_DIM,), dtype=np.float32)  # the model's output only
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", n_steps=64, batch_size=64)
    return export_bundle(model, out_dir, feature_spec=env.feature_spec(), name=name, overwrite=True, chunk_length=chunk)
