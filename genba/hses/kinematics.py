"""Poses as the controller states them: the tool in the robot's base frame, turned by Rx, Ry, Rz.

Yaskawa's Cartesian angles turn about the base frame's fixed X, then Y, then Z axes
(R = Rz(Rz) Ry(Ry) Rx(Rx)); a tool pointing straight down is Rx = 180 deg, Ry = 0, Rz = its yaw.
The emulator checks move targets on a forward-kinematics copy of the arm (a private, never-stepped
Bullet client) before anything moves: a target the arm cannot reach or only outside its joint limits
is refused, not approached.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pybullet as pb

from sim.robots.base import Robot
from sim.robots.ik import KinematicCopy
from sim.simulator import yaw_quat

TOOL_DOWN_TOLERANCE = math.radians(0.5)  # how far from tool-down Rx/Ry a target may be and still count


def rotation_to_rxyz(matrix: np.ndarray) -> tuple[float, float, float]:
    """Rx, Ry, Rz (rad) of a rotation matrix, R = Rz Ry Rx (Ry in [-pi/2, pi/2])."""
    ry = math.asin(max(-1.0, min(1.0, -float(matrix[2, 0]))))
    if abs(math.cos(ry)) < 1e-9:  # gimbal lock: Rx and Rz turn about the same axis; put it all in Rz
        return 0.0, ry, math.atan2(-float(matrix[0, 1]), float(matrix[1, 1]))
    return math.atan2(float(matrix[2, 1]), float(matrix[2, 2])), ry, math.atan2(float(matrix[1, 0]), float(matrix[0, 0]))


def rxyz_to_rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    return np.array([[cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
                     [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
                     [-sy, cy * sx, cy * cx]])


def wrap(angle: float) -> float:
    """An angle in [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def tool_down_yaw(rotation: Sequence[float]) -> float | None:
    """The yaw of a tool-down orientation given as Rx, Ry, Rz; None when it does not point down."""
    matrix = rxyz_to_rotation(*rotation)
    # Pointing down: the tool's z axis (third column) is -z of the base within the tolerance.
    if matrix[2, 2] > -math.cos(TOOL_DOWN_TOLERANCE):
        return None
    return math.atan2(float(matrix[1, 0]), float(matrix[0, 0]))


class ArmKinematics:
    """Forward kinematics of one loaded robot on a private copy, in that robot's base frame."""

    def __init__(self, robot: Robot) -> None:
        # The copy sits at the base frame's origin, unturned: its link poses are base-frame poses.
        self._copy = KinematicCopy(robot.model.urdf_path, (0.0, 0.0, 0.0), yaw_quat(0.0), robot.arm_ids, robot.tool_id)
        self._arm = list(robot.arm_ids)

    def tool_pose(self, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(position m, rotation matrix) of the tool for arm joints q, in the base frame."""
        return self._copy.tool_pose(self._arm, q)

    def close(self) -> None:
        self._copy.close()


def world_to_base(robot: Robot, position: Sequence[float], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A world pose in the robot's base frame (the base may stand anywhere, turned about z)."""
    c, s = math.cos(robot.config.base_yaw), math.sin(robot.config.base_yaw)
    unturn = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    offset = np.asarray(position, dtype=float) - np.asarray(robot.config.base_position, dtype=float)
    return unturn @ offset, unturn @ matrix


def measured_tool_pose(robot: Robot) -> tuple[np.ndarray, np.ndarray]:
    """The live tool pose (position m, rotation matrix) in the robot's base frame."""
    state = pb.getLinkState(robot.body, robot.tool_id, computeForwardKinematics=1, physicsClientId=robot.sim.cid)
    return world_to_base(robot, state[4], np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3))
