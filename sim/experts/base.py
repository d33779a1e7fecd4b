"""The scripted experts' common base: an action toward a tool target, in the env's normalised action space."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.env import FactoryEnv


class Expert:
    def __init__(self, env: FactoryEnv):
        self.env = env
        self.robot = env.robot
        cfg = env.scenario.robot
        if cfg.control != "ee_delta":
            raise ValueError("the scripted experts drive the tool: use a scenario with robot.control: ee_delta")
        dt = env.scenario.physics.control_period
        self.step_len = cfg.max_ee_speed * dt  # m per control step at |action| = 1
        self.yaw_len = cfg.max_yaw_rate * dt

    def reset(self) -> None:
        pass

    def act(self, obs: Any = None) -> np.ndarray:
        raise NotImplementedError

    def _toward(self, target: np.ndarray, yaw_delta: float, grip: float, feedforward=np.zeros(3), speed: float = 1.0) -> np.ndarray:
        """Action that moves the tool target toward `target` at up to `speed` x full speed."""
        move = (np.asarray(target) - self.robot.target_pos) / self.step_len + feedforward / self.step_len
        norm = float(np.max(np.abs(move)))
        if norm > speed:
            move *= speed / norm
        yaw = float(np.clip(yaw_delta / self.yaw_len, -1, 1))
        return np.concatenate([move, [yaw, grip]]).astype(np.float32)
