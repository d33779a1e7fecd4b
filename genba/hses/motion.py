"""The emulated robot: a genba cell whose arm carries out one interpolated move at a time.

A move is one target point, as with HSES's move commands: the controller plans the whole path when
the command arrives (checking every sample of it against the joint limits and the arm's reach, so a
bad target is refused before anything moves) and then steps the cell one control period at a time:
joint moves interpolate every axis linearly from where the arm stands, all axes arriving together,
at the commanded % of each axis's rated speed; linear moves carry the tool along a straight line at
the commanded mm/s (or its yaw at deg/s), never faster than the axes allow (they take longer instead).
The move ends once the arm has settled on the target. The cell around the arm (belt, parts) runs
with every step, as in `genba bridge twin`.

Limits of the emulation: the cell's inverse kinematics covers tool-down poses only (the closed form
of sim/robots/tool_down_ik.py), so Cartesian targets must point the tool straight down (Rx 180 deg,
Ry 0, any Rz), and so must the start of a linear move; the posture words (form) are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pybullet as pb

import sim
from genba.hses.kinematics import ArmKinematics, measured_tool_pose, rotation_to_rxyz, tool_down_yaw
from genba.hses.refusal import Refusal
from sim.tasks.base import GoalTask

DATA_RANGE = 0xB004  # "Out of range the data": a target outside the limits or the arm's reach
SETTLED_RAD = 5e-5  # a move ends when every axis is this close to its target ...
SETTLE_TIMEOUT_S = 2.0  # ... or this long after its interpolation ended
REACH_TOLERANCE_M = 1e-4  # a planned tool point the IK misses by more is out of reach
LINEAR_SAMPLE_M = 0.005  # a linear path is checked every 5 mm ...
YAW_SAMPLE_RAD = math.radians(2.0)  # ... and every 2 deg of turn
SETTLE_AT_START = 5  # control periods stepped when the cell is built
# The gripper hangs on a controller output, as on a real cell: universal output OT#1 (signal 10010, bit 0
# of I/O group 1001) on closes it, off opens it (the env's grip +1 / -1).
GRIPPER_GROUP, GRIPPER_BIT = 1001, 0
GRIP_OPEN, GRIP_CLOSED = -1.0, 1.0


@dataclass
class Episode:
    """The env's bookkeeping while the arm moves under HSES: steps at the control rate, done, success, KPIs."""

    seed: int | None = None
    steps: int = 0
    done: bool = False
    info: dict = field(default_factory=dict)


@dataclass
class _Move:
    at: Callable[[float], list[float]]  # path fraction 0..1 -> joint targets
    duration: float  # sim seconds of interpolation
    target: np.ndarray
    elapsed: float = 0.0
    settling: float = 0.0


class CellMotion:
    """A PyBullet cell (``sim.make_env``) driven as a controller drives its arm. Not thread-safe: one owner steps it."""

    def __init__(self, scenario: str = "conveyor-pick", robot: str = "gp7", seed: int = 0) -> None:
        self.env = sim.make_env(scenario, robot=robot)
        try:
            self.env.reset(seed=seed)
            cell = self.env.unwrapped
            self.robot, self._sim, self._task, self._rng = cell.robot, cell.sim, cell.task, cell.np_random
            self.period = float(cell.scenario.physics.control_period)
            self.kinematics = ArmKinematics(self.robot)
        except BaseException:
            self.env.close()
            raise
        self.lower, self.upper = self.robot.lower, self.robot.upper
        self.max_velocity = self.robot.max_velocity
        self._hold = list(self.robot.reading.q)  # what the motors hold between moves
        self._move: _Move | None = None
        self.grip = GRIP_OPEN
        self.episode = Episode()
        self.time = 0.0  # sim seconds stepped
        for _ in range(SETTLE_AT_START):  # the arm takes its own weight before the first reading
            self.step()

    def close(self) -> None:
        self.kinematics.close()
        self.env.close()

    # --- state ----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._move is not None

    def joints(self) -> np.ndarray:
        return np.array(self.robot.reading.q)

    def tool_pose(self) -> tuple[np.ndarray, tuple[float, float, float]]:
        """The measured tool position (m) and Rx, Ry, Rz (rad) in the robot's base frame."""
        position, matrix = measured_tool_pose(self.robot)
        return position, rotation_to_rxyz(matrix)

    def torque_percent(self) -> np.ndarray:
        """Each axis's motor torque as % of its rated torque (the URDF effort limit)."""
        states = pb.getJointStates(self.robot.body, self.robot.arm_ids, physicsClientId=self._sim.cid)
        return np.array([s[3] for s in states]) / self.robot.max_force * 100.0

    # --- stepping -------------------------------------------------------------------------------
    def step(self) -> None:
        """One control period: advance the move (if any), command the arm, step the cell."""
        move = self._move
        if move is not None:
            move.elapsed += self.period
            self._hold = move.at(min(1.0, move.elapsed / move.duration))
            if move.elapsed >= move.duration:
                if np.abs(self.joints() - move.target).max() < SETTLED_RAD or move.settling >= SETTLE_TIMEOUT_S:
                    self._move = None
                move.settling += self.period
        self.robot.command_joint_positions(self._hold, self.grip)
        self._task.before_physics(self._rng)
        self._sim.step()
        self.robot.refresh()
        self._task.after_physics()
        self.time += self.period
        episode = self.episode
        if episode.seed is not None and not episode.done:  # as env.step counts: one step per control period
            episode.steps += 1
            terminated = self._task.is_terminated()
            episode.done = terminated or episode.steps >= self.env.unwrapped.scenario.max_episode_steps
            episode.info = self._task.info()

    def reset_episode(self, seed: int) -> None:
        """Start an episode as ``env.reset(seed=seed)`` does (the same parts, times and arm start as `genba eval`)."""
        self.env.reset(seed=seed)
        self._rng = self.env.unwrapped.np_random  # reset made a new generator
        self._move = None
        self._hold = list(self.robot.reading.q)
        self.grip = GRIP_OPEN
        self.episode = Episode(seed, info=self._task.info())

    def set_outputs(self, io: dict[int, int]) -> None:
        """The controller's outputs changed: the gripper follows its output."""
        self.grip = GRIP_CLOSED if io.get(GRIPPER_GROUP, 0) >> GRIPPER_BIT & 1 else GRIP_OPEN

    def task_features(self) -> list[float]:
        """What the cell PC senses of the task: the env's task features (its observation minus the robot's)."""
        task = self._task
        goals = [*task.achieved_goal(), *task.desired_goal()] if isinstance(task, GoalTask) else []
        return [float(v) for v in (*task.observation(), *goals)]

    def stop(self) -> None:
        """End any move where the arm is now (hold, servo off, alarm): the motors hold the measured joints."""
        self._move = None
        self._hold = list(self.robot.reading.q)

    # --- moves ----------------------------------------------------------------------------------
    def move_joints(self, target: np.ndarray, percent: float) -> None:
        """Joint interpolation to ``target`` (rad) at ``percent`` of each axis's rated speed."""
        target = np.asarray(target, dtype=float)
        self.check_limits(target, "target joints")
        start = np.array(self._hold)
        duration = float(np.max(np.abs(target - start) / (self.max_velocity * percent / 100.0)))
        self._begin(lambda s: (start + (target - start) * s).tolist(), duration, target)

    def move_joints_to_pose(self, position: np.ndarray, yaw: float, percent: float) -> None:
        """Joint interpolation to the tool-down pose (base frame)."""
        target = np.array(self._solve(position, yaw, self._hold))
        self._check_reach(target, position, "target pose")
        self.move_joints(target, percent)

    def move_linear(self, position: np.ndarray, yaw: float, mm_per_s: float | None = None,
                    deg_per_s: float | None = None) -> None:
        """The tool along a straight line to the tool-down pose (base frame), at mm/s or (turning) deg/s."""
        start_p, start_yaw = self.planned_pose()
        if start_yaw is None:
            raise Refusal(DATA_RANGE, "a linear move starts from a tool-down pose in this emulator")
        end_yaw = start_yaw + _turn(start_yaw, yaw)
        position = np.asarray(position, dtype=float)
        distance = float(np.linalg.norm(position - start_p))
        turn = abs(end_yaw - start_yaw)
        n = max(8, min(400, math.ceil(max(distance / LINEAR_SAMPLE_M, turn / YAW_SAMPLE_RAD))))
        previous, path = list(self._hold), [np.array(self._hold)]
        for k in range(1, n + 1):  # plan and check the whole path before anything moves
            s = k / n
            point = start_p + (position - start_p) * s
            q = self._solve(point, start_yaw + (end_yaw - start_yaw) * s, previous)
            self.check_limits(np.array(q), f"path point {k}/{n}")
            self._check_reach(np.array(q), point, f"path point {k}/{n}")
            path.append(np.array(q))
            previous = q
        # No axis may exceed its rated speed: the move takes at least its slowest axis's time.
        axis_time = float(np.max(np.sum(np.abs(np.diff(np.array(path), axis=0)), axis=0) / self.max_velocity))
        wanted = distance / (mm_per_s / 1000.0) if mm_per_s else turn / math.radians(deg_per_s or 1.0)
        chain = [list(self._hold)]

        def at(s: float) -> list[float]:
            q = self._solve(start_p + (position - start_p) * s, start_yaw + (end_yaw - start_yaw) * s, chain[0])
            chain[0] = q
            return q

        self._begin(at, max(wanted, axis_time), path[-1])

    def planned_pose(self) -> tuple[np.ndarray, float | None]:
        """Where the held joints put the tool (base frame) and its yaw, None when not tool-down."""
        position, matrix = self.kinematics.tool_pose(self._hold)
        return position, tool_down_yaw(rotation_to_rxyz(matrix))

    def pose_of(self, q: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Where joints q put the tool (base frame) and its tool-down yaw (None when not tool-down)."""
        position, matrix = self.kinematics.tool_pose(q)
        return position, tool_down_yaw(rotation_to_rxyz(matrix))

    def _begin(self, at: Callable[[float], list[float]], duration: float, target: np.ndarray) -> None:
        self._move = _Move(at, max(duration, self.period), np.asarray(target, dtype=float))

    def _solve(self, position: np.ndarray, yaw: float, previous: list[float]) -> list[float]:
        x, y, z = (float(v) for v in position)
        return self.robot.model.tool_down_ik(x, y, z, yaw - self.robot.model.tool_yaw_offset, previous)

    def check_limits(self, q: np.ndarray, what: str) -> None:
        """Refuse joints outside the URDF limits (0xB004), naming the first axis out."""
        if not np.all(np.isfinite(q)):
            raise Refusal(DATA_RANGE, f"{what}: no joint solution")
        outside = [i for i in range(len(q)) if not self.lower[i] - 1e-9 <= q[i] <= self.upper[i] + 1e-9]
        if outside:
            i = outside[0]
            raise Refusal(DATA_RANGE, f"{what}: axis {i + 1} at {math.degrees(q[i]):.3f} deg is outside "
                                      f"{math.degrees(self.lower[i]):.1f}..{math.degrees(self.upper[i]):.1f} deg")

    def _check_reach(self, q: np.ndarray, position: np.ndarray, what: str) -> None:
        reached, _ = self.kinematics.tool_pose(q)
        miss = float(np.linalg.norm(reached - position))
        if miss > REACH_TOLERANCE_M:
            raise Refusal(DATA_RANGE, f"{what}: out of the arm's reach (missed by {miss * 1000:.1f} mm)")


def _turn(start: float, end: float) -> float:
    """The shortest signed turn from one yaw to another."""
    return (end - start + math.pi) % (2.0 * math.pi) - math.pi
