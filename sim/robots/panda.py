"""Franka Emika Panda, from the URDF that ships with pybullet_data."""

from __future__ import annotations

import math
from pathlib import Path

import pybullet_data

from sim.robots.base import Robot, RobotModel
from sim.robots.low_detail import collision_visual_urdf
from sim.robots.tool_down_ik import PlanarArm, nearest_turn

# The tool-down plane of pybullet_data's panda.urdf with joints 3 and 5 at zero: joint 2 at 0.333 m,
# joint 2 -> 4 (0.0825, 0.316), joint 4 -> 6 (-0.0825, 0.384), joint 6 -> grasp target 0.088 m out
# and 0.107 + 0.105 m down (flange, hand and grasp target frames).
PANDA_PLANE = PlanarArm(shoulder=(0.0, 0.333), upper=(0.0825, 0.316), fore=(-0.0825, 0.384), wrist_to_tool=(0.088, -0.212), elbow=-1)


def panda_tool_down_ik(x: float, y: float, z: float, yaw: float, previous: list[float]) -> list[float]:
    """Joint 1 aims, 2 and 4 place the wrist (4 = upper - forearm angle), 6 keeps the flange vertical,
    7 sets the yaw (tool yaw = joint 1 + pi/4 - joint 7: the hand sits turned by pi/4)."""
    base, upper, fore = PANDA_PLANE.solve(x, y, z)
    return [base, upper, 0.0, upper - fore, 0.0, fore, nearest_turn(base + math.pi / 4 - yaw, previous[6])]


PANDA_URDF = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
# Low-detail colours: white links, the dark flange and fingers of the real arm (RGBA 0-1).
PANDA_LOW_DETAIL_COLORS = {"panda_link7": (0.25, 0.25, 0.25, 1.0), "panda_leftfinger": (0.25, 0.25, 0.25, 1.0),
                           "panda_rightfinger": (0.25, 0.25, 0.25, 1.0)}


def panda_low_detail_urdf() -> Path:
    return collision_visual_urdf(PANDA_URDF, PANDA_LOW_DETAIL_COLORS, default_color=(0.92, 0.92, 0.92, 1.0))


PANDA = RobotModel(
    name="panda",
    urdf_path=PANDA_URDF,
    arm_joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
    finger_joints=("panda_finger_joint1", "panda_finger_joint2"),
    tool_link="panda_grasptarget",
    # Elbow-up pose over the table, as used by panda-gym's neutral configuration.
    home=(0.0, 0.41, 0.0, -1.85, 0.0, 2.26, 0.79),
    finger_travel=0.04,
    # Franka Hand datasheet: 70 N continuous grasp force; half of it per finger keeps the motors honest.
    finger_force=35.0,
    workspace_low=(0.15, -0.6, 0.0),
    workspace_high=(0.8, 0.6, 0.7),
    rated_payload=3.0,  # kg, Franka Emika Panda datasheet
    source="pybullet_data franka_panda/panda.urdf; payload and grasp force from the Franka Emika Panda datasheet",
    link_friction={"panda_leftfinger": 1.5, "panda_rightfinger": 1.5},
    tool_down_ik=panda_tool_down_ik,
    low_detail_urdf=panda_low_detail_urdf,
    wrist_joint="panda_hand_joint",
)


class Panda(Robot):
    def __init__(self, sim, config, name: str = "robot"):
        super().__init__(sim, PANDA, config, name)
