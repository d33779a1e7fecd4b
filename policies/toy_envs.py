"""Trivially easy envs for tests and smoke runs (the idea of SB3's IdentityEnv), with feature specs.

They need no physics, so a learning test can run in seconds; `toy-target` has a flat Box observation,
`toy-reach` is goal-conditioned (Dict observation + vectorised compute_reward) for HER.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TOY_CONTROL_HZ = 10.0


class TargetEnv(gym.Env):
    """Observe a target in [-1, 1]^dim; the right action is the target itself.

    Reward = 1 - mean |action - target| (so 1 is perfect); success when every component is within
    `tolerance`. A fresh target is drawn every step; episodes last `episode_steps` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self, dim: int = 1, episode_steps: int = 10, tolerance: float = 0.1):
        self.dim, self.episode_steps, self.tolerance = dim, episode_steps, tolerance
        self.observation_space = spaces.Box(-1.0, 1.0, (dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), dtype=np.float32)
        self._target = np.zeros(dim, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._target = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self._target.copy(), {}

    def step(self, action):
        error = np.abs(np.clip(action, -1, 1) - self._target)
        reward = float(1.0 - error.mean())
        success = bool(np.all(error < self.tolerance))
        self._t += 1
        self._target = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        truncated = self._t >= self.episode_steps
        return self._target.copy(), reward, False, truncated, {"is_success": success, "cycle_time": self._t / TOY_CONTROL_HZ, "collisions": 0}

    def feature_spec(self) -> dict[str, Any]:
        return {
            "observation": [{"name": "target", "size": self.dim, "unit": "", "low": -1.0, "high": 1.0}],
            "action": {"kind": "absolute", "features": [{"name": "guess", "size": self.dim, "unit": "", "low": -1.0, "high": 1.0}]},
            "control_hz": TOY_CONTROL_HZ,
            "robot": {"model": "toy"},
        }


class PointReachEnv(gym.Env):
    """A point in the unit square moves by action * step_size toward a goal; sparse reward, HER-ready.

    observation = (x, y), achieved_goal = (x, y), desired_goal = goal; reward = -(distance > tolerance).
    Terminates on success so a cycle time exists; truncated at `episode_steps`.
    """

    metadata = {"render_modes": []}

    def __init__(self, episode_steps: int = 20, step_size: float = 0.2, tolerance: float = 0.1):
        self.episode_steps, self.step_size, self.tolerance = episode_steps, step_size, tolerance
        box = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)
        self._goal = np.zeros(2, dtype=np.float32)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self._pos.copy(), "achieved_goal": self._pos.copy(), "desired_goal": self._goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self._goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return -(d > self.tolerance).astype(np.float32)

    def step(self, action):
        self._pos = np.clip(self._pos + self.step_size * np.clip(action, -1, 1), -1, 1).astype(np.float32)
        self._t += 1
        obs = self._obs()
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {}))
        success = reward == 0.0
        truncated = self._t >= self.episode_steps and not success
        return obs, reward, success, truncated, {"is_success": success, "cycle_time": self._t / TOY_CONTROL_HZ, "collisions": 0}

    def feature_spec(self) -> dict[str, Any]:
        xy = [{"name": "x", "size": 1, "unit": "m", "low": -1.0, "high": 1.0}, {"name": "y", "size": 1, "unit": "m", "low": -1.0, "high": 1.0}]
        return {
            "observation": {"observation": xy, "achieved_goal": xy, "desired_goal": xy},
            "action": {"kind": "ee_delta", "features": [{"name": "dx", "size": 1, "unit": "", "low": -1.0, "high": 1.0},
                                                         {"name": "dy", "size": 1, "unit": "", "low": -1.0, "high": 1.0}]},
            "control_hz": TOY_CONTROL_HZ,
            "robot": {"model": "point", "max_ee_speed": self.step_size * TOY_CONTROL_HZ},
        }


class PointReachExpert:
    """Scripted expert for PointReachEnv: head straight for the goal at full speed."""

    def __init__(self, env: PointReachEnv):
        self.step_size = env.step_size

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        delta = (obs["desired_goal"] - obs["achieved_goal"]) / self.step_size
        return np.clip(delta, -1, 1).astype(np.float32)


TOY_ENVS = {"toy-target": TargetEnv, "toy-reach": PointReachEnv}
