"""What the robot should achieve in a cell: observations of the task, reward, success, KPIs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from perception.localize import Detection, PartClass
from perception.observers import RobotState
from scenarios.schema import Scenario
from sim.cell import Cell
from sim.errors import SimError

Feature = tuple[str, int, str]  # name, size, unit

# The commanded tool target minus the measured tool (values: Robot.command_offset()): a controller knows both.
# The env appends it after the task's features for a task that `observes_command` (palletize) and for any
# other on request (FactoryEnv observe_command). With an actuator delay or a slow arm it shows what is still
# on its way to the motors, which the measured tool alone does not.
COMMAND_FEATURES: tuple[Feature, ...] = (("tool_target_to_tool", 3, "m"), ("tool_target_yaw_to_tool", 1, "rad"))

# A part in the scene as the simulator knows it (what perception should find): name, type, shape,
# size (m), color (RGBA 0-1), position (m, centre), yaw (rad), yaw_period (rad; 0 = any turn), state.
PartTruth = dict[str, Any]


def robot_state(robot) -> RobotState:
    """What a controller reads of its robot now, as perception.observers takes it."""
    r = robot.reading
    return RobotState(r.tool_pos, r.tool_yaw, r.tool_vel, r.opening, robot.grip_command)


class Task(ABC):
    goal_conditioned = False
    # Whether its policies always see COMMAND_FEATURES after its features (the env appends them).
    observes_command = False
    # Numeric keys of the final step's info that evaluation averages over episodes (beyond success,
    # cycle time and collisions, which every task reports).
    episode_kpis: tuple[str, ...] = ()

    def __init__(self, cell: Cell, scenario: Scenario):
        self.cell, self.scenario = cell, scenario
        self.sim, self.robot = cell.sim, cell.robot
        # obs_mode "perceived": what the camera and the robot's own sensors tell (perception.observers),
        # in place of the exact part poses, for the observation and the scripted expert alike.
        self.observer = None

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

    def make_observer(self):
        """The perception.observers observer of this cell, built from the cell's fixed facts."""
        raise SimError(f"task {self.scenario.task.type!r} has no perceived observation")

    def perceive(self, detections: list[Detection] | None) -> list[float]:
        """The task features from the observer (`observation()`'s layout); detections None: no new frame."""
        raise SimError(f"task {self.scenario.task.type!r} has no perceived observation")


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
