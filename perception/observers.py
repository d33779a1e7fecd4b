"""From what a cell PC senses to the observation a policy was trained on.

A policy trained in the simulator observes the robot's own state (what any controller reads) and the
task's features, which the simulator computes from exact part poses. On a real cell the task's
features come from the camera instead: an observer turns the detections of `perception.localize`,
the robot's own sensors (tool pose and velocity, gripper opening and command) and the cell's fixed
facts (a belt's speed, a bin's place) into the same features, in the same layout and units, so a
bundle trained on state runs unchanged. The simulator's `perceived` observation mode runs exactly
this code on its rendered camera frames.

What the camera cannot tell is inferred as a controller would:
- a part is held while the gripper is commanded closed and stays open wider than half the part
  (its fingers rest on something), after closing next to the part's last seen place; it then moves
  with the tool;
- a part hidden under the arm keeps moving with the belt it lies on, for `max_blind_s`;
- a part let go over its bin is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from perception.errors import PerceptionError
from perception.localize import Detection, PartClass, wrap_angle

Feature = tuple[str, int, str]  # name, size, unit

# The task features of conveyor-pick, in order (sim/tasks/conveyor_pick.py observes the same from the truth).
CONVEYOR_PICK_FEATURES: list[Feature] = [
    ("part_position", 3, "m"),
    ("part_velocity", 3, "m/s"),
    ("part_minus_tool", 3, "m"),
    ("part_yaw_minus_tool_yaw", 1, "rad"),
    ("part_held", 1, "bool"),
    ("part_present", 1, "bool"),
    ("bin_drop_point_minus_tool", 3, "m"),
    ("belt_velocity", 3, "m/s"),
]

HELD_OPENING_FRACTION = 0.5  # held: fingers stay open wider than this share of the part's narrower side
GRASP_RADIUS = 0.06  # m: the gripper closes on a part only if the part was last seen this close to the tool
TRACK_GATE = 0.05  # m: a detection this close to where the part should be is that part
ON_SUPPORT_TOLERANCE = 0.015  # m: a part whose centre is this close to resting height lies on its support


@dataclass(frozen=True)
class RobotState:
    """What the controller reads of its own robot each control period."""

    tool_position: tuple[float, float, float]  # m, world
    tool_yaw: float  # rad
    tool_velocity: tuple[float, float, float]  # m/s, world
    gripper_opening: float  # m between the fingers
    grip_command: float  # -1 fully open .. +1 fully closed


@dataclass(frozen=True)
class BinBox:
    """Where a bin is: its drop point and the box of its inside (m, world)."""

    drop_point: tuple[float, float, float]
    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def contains(self, point: Sequence[float]) -> bool:
        return all(lo <= p <= hi for p, lo, hi in zip(point, self.low, self.high))


@dataclass
class PartEstimate:
    """The part the robot works on, as the observer believes it is now."""

    position: np.ndarray  # m, centre, world
    velocity: np.ndarray  # m/s
    yaw: float  # rad, world
    held: bool
    seen_at: float  # s: when the camera last saw it
    in_bin: bool = False


class ConveyorPickObserver:
    """conveyor-pick's task features from the belt camera's detections and the robot's own sensors."""

    def __init__(self, part: PartClass, belt_top_z: float, belt_direction: Sequence[float], bin_box: BinBox,
                 max_blind_s: float = 1.5) -> None:
        if part.shape != "box":
            raise PerceptionError(f"conveyor-pick's parts are boxes; class {part.name!r} is a {part.shape}")
        direction = np.asarray(belt_direction, dtype=np.float64)
        if direction.shape != (3,) or not np.linalg.norm(direction) > 0:
            raise PerceptionError(f"belt_direction must be a non-zero 3-vector, got {belt_direction!r}")
        self.part, self.bin = part, bin_box
        self.resting_z = belt_top_z + part.size[2] / 2.0  # a part's centre height while it rides the belt
        self.belt_direction = direction / np.linalg.norm(direction)
        self.max_blind_s = max_blind_s
        self.held_min_opening = HELD_OPENING_FRACTION * min(part.size[0], part.size[1])
        self.reset()

    @staticmethod
    def features() -> list[Feature]:
        return list(CONVEYOR_PICK_FEATURES)

    def reset(self) -> None:
        self.estimate: Optional[PartEstimate] = None
        self._grasp: Optional[tuple[np.ndarray, float]] = None  # part - tool offset, tool yaw at the grasp
        self._time: Optional[float] = None

    def observe(self, detections: Sequence[Detection], robot: RobotState, belt_velocity: Sequence[float], time: float) -> list[float]:
        """The task features now (CONVEYOR_PICK_FEATURES' order and units)."""
        self._update(detections, robot, np.asarray(belt_velocity, dtype=np.float64), time)
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        drop = (np.asarray(self.bin.drop_point) - tool).tolist()
        belt = [float(v) for v in belt_velocity]
        est = self.estimate
        if est is None:
            return [0.0] * 12 + drop + belt
        rel_yaw = wrap_angle(est.yaw - robot.tool_yaw, math.pi / 2)
        return [*est.position.tolist(), *est.velocity.tolist(), *(est.position - tool).tolist(), rel_yaw,
                float(est.held), 1.0, *drop, *belt]

    def part_state(self) -> Optional[dict]:
        """The estimate as the scripted expert reads the simulator's truth: position, velocity, yaw, held, in_bin."""
        est = self.estimate
        if est is None:
            return None
        return {"position": est.position.copy(), "velocity": est.velocity.copy(), "yaw": est.yaw, "held": est.held,
                "in_bin": est.in_bin}

    # ------------------------------------------------------------------ internals

    def _update(self, detections: Sequence[Detection], robot: RobotState, belt_velocity: np.ndarray, time: float) -> None:
        dt = 0.0 if self._time is None else max(0.0, time - self._time)
        self._time = time
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        est = self.estimate
        closed_on_something = robot.grip_command > 0.0 and robot.gripper_opening > self.held_min_opening
        if est is not None and closed_on_something:
            if self._grasp is None and np.linalg.norm(est.position - tool) <= GRASP_RADIUS:
                self._grasp = (est.position - tool, robot.tool_yaw)
            if self._grasp is not None:  # it moves with the tool
                offset, yaw_at_grasp = self._grasp
                est.position, est.velocity = tool + offset, np.asarray(robot.tool_velocity, dtype=np.float64)
                est.yaw = est.yaw + (robot.tool_yaw - yaw_at_grasp)
                self._grasp = (offset, robot.tool_yaw)
                est.held, est.in_bin = True, self.bin.contains(est.position)
                return
        if est is not None and est.held:  # just let go
            self._grasp = None
            est.held = False
            if self.bin.contains(est.position) or self._over_bin(est.position):
                self.estimate = None  # dropped into its bin: done with this part
                return
        candidates = [d for d in detections if d.class_name == self.part.name and not self._over_bin(d.position)]
        seen = self._match(candidates, dt)
        if seen is not None:
            position = np.asarray(seen.position, dtype=np.float64)
            on_belt = abs(position[2] - self.resting_z) <= ON_SUPPORT_TOLERANCE
            if on_belt:
                velocity = belt_velocity.copy()
            elif est is not None and dt > 0:
                velocity = (position - est.position) / dt
            else:
                velocity = np.zeros(3)
            self.estimate = PartEstimate(position, velocity, float(seen.yaw), False, time, self.bin.contains(position))
        elif est is not None and time - est.seen_at <= self.max_blind_s:  # hidden (under the arm): it rides on
            est.position = est.position + est.velocity * dt
            est.in_bin = self.bin.contains(est.position)
        else:
            self.estimate = None

    def _match(self, candidates: list[Detection], dt: float) -> Optional[Detection]:
        if not candidates:
            return None
        est = self.estimate
        if est is None:  # a new part: the one furthest along the belt came first
            return max(candidates, key=lambda d: float(np.dot(d.position, self.belt_direction)))
        predicted = est.position + est.velocity * dt
        nearest = min(candidates, key=lambda d: float(np.linalg.norm(np.asarray(d.position) - predicted)))
        return nearest if np.linalg.norm(np.asarray(nearest.position) - predicted) <= TRACK_GATE else None

    def _over_bin(self, position: Sequence[float]) -> bool:
        return all(lo <= p <= hi for p, lo, hi in zip(position[:2], self.bin.low[:2], self.bin.high[:2]))
