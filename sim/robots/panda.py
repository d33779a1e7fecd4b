"""Franka Emika Panda, from the URDF that ships with pybullet_data."""

from __future__ import annotations

from pathlib import Path

import pybullet_data

from sim.robots.base import Robot, RobotModel

PANDA = RobotModel(
    name="panda",
    urdf_path=Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf",
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
)


class Panda(Robot):
    def __init__(self, sim, config, name: str = "robot"):
        super().__init__(sim, PANDA, config, name)
