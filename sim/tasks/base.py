"""What the robot should achieve in a cell: observations of the task, reward, success, KPIs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from scenarios.schema import Scenario
from sim.cell import Cell

Feature = tuple[str, int, str]  # name, size, unit


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
