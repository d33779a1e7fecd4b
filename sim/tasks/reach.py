"""Reach: bring the tool point to a random goal in the workspace."""

from __future__ import annotations

from typing import Any

import numpy as np
import pybullet as pb

from scenarios.schema import ReachTask as ReachConfig
from sim.tasks.base import Feature, GoalTask
from sim.tasks.collisions import CollisionCounter


class Reach(GoalTask):
    goal_features: list[Feature] = [("tool_position", 3, "m")]

    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        self._collisions = CollisionCounter(cell)

    def reset(self, rng: np.random.Generator) -> None:
        r = self.scenario.randomization
        self.goal = rng.uniform(r.goal_low, r.goal_high)
        self._tool = self.robot.tool_pos
        self._collisions.reset()

    def after_physics(self) -> None:
        self._tool = self.robot.tool_pos
        self._collisions.update(pb.getContactPoints(self.robot.body, physicsClientId=self.sim.cid))

    def features(self) -> list[Feature]:
        return []

    def observation(self) -> np.ndarray:
        return np.zeros(0)

    # Goals are float32 like the observation, so reward() equals compute_reward() on the observed goals.
    def achieved_goal(self) -> np.ndarray:
        return self._tool.astype(np.float32)

    def desired_goal(self) -> np.ndarray:
        return self.goal.astype(np.float32)

    @property
    def config(self) -> ReachConfig:
        return self.scenario.task  # type: ignore[return-value]

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1)
        w = self.config.reward
        return (w.distance * d + w.success * (d < self.config.success_distance)).astype(np.float32)

    def distance(self) -> float:
        return float(np.linalg.norm(self.achieved_goal() - self.desired_goal()))

    def is_success(self) -> bool:
        return self.distance() < self.config.success_distance

    def is_terminated(self) -> bool:
        return self.is_success()

    def info(self) -> dict[str, Any]:
        info = {"is_success": self.is_success(), "collisions": self._collisions.total}
        if info["is_success"]:  # the episode ends here: its duration is the cycle
            info["cycle_time"] = self.sim.time
        return info
