"""Reach: bring the tool point to a random goal in the workspace."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from scenarios.schema import ReachTask as ReachConfig
from sim.tasks.base import Feature, GoalTask
from sim.tasks.collisions import CollisionCounter

# Rounding to float32 through struct: for three numbers far cheaper than numpy.
FLOAT32, FLOAT32_X3 = struct.Struct("f"), struct.Struct("3f")


class Reach(GoalTask):
    goal_features: list[Feature] = [("tool_position", 3, "m")]

    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        self._collisions = CollisionCounter(cell)

    def reset(self, rng: np.random.Generator) -> None:
        r = self.scenario.randomization
        self.goal = rng.uniform(r.goal_low, r.goal_high)
        self._collisions.reset()
        self._measure()

    @property
    def goal(self) -> np.ndarray:
        return self._goal

    @goal.setter
    def goal(self, value) -> None:
        self._goal = np.asarray(value, dtype=float)
        self._goal32 = self._goal.astype(np.float32)
        self._goal32_list = self._goal32.tolist()

    def after_physics(self) -> None:
        self._collisions.update(self.robot.contacts())
        self._measure()

    def _measure(self) -> None:
        """Goal distance and reward once per step (reward, success and info all need them).

        From the float32 goals the observation holds, so reward() equals compute_reward() on the
        observed goals exactly, as HER and the env checkers require.
        """
        # The same float64 operations, in the same order, as goal_distance and _reward_at on arrays.
        self._achieved32_list = ax, ay, az = FLOAT32_X3.unpack(FLOAT32_X3.pack(*self.robot.reading.tool_pos))
        gx, gy, gz = self._goal32_list
        dx, dy, dz = ax - gx, ay - gy, az - gz
        d = math.sqrt(dx * dx + dy * dy + dz * dz)
        w = self.config.reward
        self._success = d < self.config.success_distance
        self._reward = FLOAT32.unpack(FLOAT32.pack(w.distance * d + w.success * (1.0 if self._success else 0.0)))[0]

    def features(self) -> list[Feature]:
        return []

    def observation(self) -> list[float]:
        return []

    def achieved_goal(self) -> list[float]:
        return self._achieved32_list

    def desired_goal(self) -> list[float]:
        return self._goal32_list

    def reward(self) -> float:
        return self._reward

    @property
    def config(self) -> ReachConfig:
        return self.scenario.task  # type: ignore[return-value]

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        return self._reward_at(goal_distance(achieved, desired))

    def _reward_at(self, d: np.ndarray) -> np.ndarray:
        w = self.config.reward
        return (w.distance * d + w.success * (d < self.config.success_distance).astype(np.float64)).astype(np.float32)

    def is_success(self) -> bool:
        return self._success

    def is_terminated(self) -> bool:
        return self._success

    def info(self) -> dict[str, Any]:
        if self._success:  # the episode ends here: its duration is the cycle
            return {"is_success": True, "collisions": self._collisions.total, "cycle_time": self.sim.time}
        return {"is_success": False, "collisions": self._collisions.total}


def goal_distance(achieved, desired) -> np.ndarray:
    """Euclidean distance over the last axis, in float64 from the (float32) goals."""
    diff = np.asarray(achieved, dtype=np.float64) - np.asarray(desired, dtype=np.float64)
    sq = diff * diff
    return np.sqrt(sq[..., 0] + sq[..., 1] + sq[..., 2])  # summed in a fixed order, as _measure does
