"""What the robot should achieve in a cell: observations of the task, reward, success, KPIs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from perception.localize import PartClass
from scenarios.schema import Scenario
from sim.cell import Cell
from sim.errors import SimError

Feature = tuple[str, int, str]  # name, size, unit
# A part in the scene as the simulator knows it (what perception should find): name, type, shape,
# size (m), color (RGBA 0-1), position (m, centre), yaw (rad), yaw_period (rad; 0 = any turn), state.
PartTruth = dict[str, Any]


class Task(ABC):
    goal_conditioned = False

    def __init__(self, cell: Cell, scenario: Scenario):
        self.cell, self.scenario = cell, scenario
        self.sim, self.robot = cell.sim, cell.robot

    @abstractmethod
    def reset(self, rng: np.random.Generator) -> None:
        """Draw this episode's randomisation from the env's RNG."""

    def before_physics(self, rng: np.random.Generator) -> None:
        """Called each control step before physics (spawning, belt upkeep)."""

    @abstractmethod
    def after_physics(self) -> None:
        """Called each control step after physics: update events and counters."""

    @abstractmethod
    def features(self) -> list[Feature]:
        """The task part of the observation, in order."""

    @abstractmethod
    def observation(self) -> Sequence[float]: ...

    @abstractmethod
    def reward(self) -> float: ...

    @abstractmethod
    def is_success(self) -> bool: ...

    @abstractmethod
    def is_terminated(self) -> bool: ...

    def info(self) -> dict[str, Any]:
        return {"is_success": self.is_success()}

    # --- what cameras see -----------------------------------------------------------------------
    def perception_classes(self) -> list[PartClass]:
        """The kinds of part a camera of this cell should find (perception.localize), in a fixed order."""
        raise SimError(f"task {self.scenario.task.type!r} has no parts for a camera to find")

    def support_z(self) -> float:
        """Height (m) of the surface the parts lie on: where localisation without depth puts their bottoms."""
        raise SimError(f"task {self.scenario.task.type!r} has no parts for a camera to find")

    def part_truth(self) -> list[PartTruth]:
        """Every part in the scene now (not parked off-stage), read from the simulator."""
        raise SimError(f"task {self.scenario.task.type!r} has no parts for a camera to find")


class GoalTask(Task):
    """A task whose reward is a function of (achieved_goal, desired_goal) only, so HER can relabel."""

    goal_conditioned = True
    goal_features: list[Feature]

    @abstractmethod
    def achieved_goal(self) -> Sequence[float]: ...

    @abstractmethod
    def desired_goal(self) -> Sequence[float]: ...

    @abstractmethod
    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray: ...

    def reward(self) -> float:
        return float(self.compute_reward(self.achieved_goal(), self.desired_goal(), None))
