"""Yaskawa Motoman GP7-class 6-axis arm with a generic parallel-jaw gripper (sim/assets/gp7)."""

from __future__ import annotations

import math
from pathlib import Path

from sim.robots.base import Robot, RobotModel
from sim.robots.tool_down_ik import PlanarArm, nearest_turn

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "gp7"

# The tool-down plane of the URDF below (sim/assets/gp7/gp7.urdf): L axis 0.33 m up and 0.04 m ahead
# of the base, L-U 0.445 m, U to the wrist point (B axis) 0.44 m along and 0.04 m above the forearm,
# wrist point to TCP 0.08 m flange + 0.121 m gripper.
GP7_PLANE = PlanarArm(shoulder=(0.04, 0.33), upper=(0.0, 0.445), fore=(0.44, 0.04), wrist_to_tool=(0.0, -0.201), elbow=-1)


def gp7_tool_down_ik(x: float, y: float, z: float, yaw: float, previous: list[float]) -> list[float]:
    """S aims, L and U place the wrist (U = L - forearm angle), R stays 0, B keeps the flange vertical,
    T sets the yaw (tool yaw = S + T)."""
    s, upper, fore = GP7_PLANE.solve(x, y, z)
    return [s, upper, upper - fore, 0.0, fore - math.pi / 2, nearest_turn(yaw - s, previous[5])]


GP7_MODEL = RobotModel(
    name="gp7",
    urdf_path=ASSET_DIR / "gp7.urdf",
    arm_joints=("joint_1_s", "joint_2_l", "joint_3_u", "joint_4_r", "joint_5_b", "joint_6_t"),
    finger_joints=("gp7_finger_joint1", "gp7_finger_joint2"),
    tool_link="tcp",
    # Elbow up, tool straight down at (0.40, 0, 0.25) m in the base frame (solved once by IK).
    home=(0.0, 0.126, -0.776, 0.0, -0.669, 0.0),
    finger_travel=0.04,
    # Estimate for a small electric industrial gripper (~100-150 N total grip force).
    finger_force=60.0,
    # A clip box, not the reachable set: the far top corners lie beyond the 0.927 m reach.
    # x from 0.15 so bins beside the base (e.g. at x 0.15-0.25, y +-0.45) stay inside.
    workspace_low=(0.15, -0.6, 0.0),
    workspace_high=(0.85, 0.6, 0.7),
    rated_payload=7.0,  # kg, datasheet; the 0.86 kg gripper counts against it
    source=(
        "Yaskawa 'MOTOMAN GP7' datasheet (document number not verified): 6 axes, payload 7 kg, horizontal "
        "reach 927 mm, vertical reach 1693 mm, repeatability +/-0.03 mm, mass 34 kg; ranges S +/-170, "
        "L +145/-65, U +190/-70, R +/-190, B +/-135, T +/-360 deg; speeds S 375, L 315, U 410, R 550, B 550, "
        "T 1000 deg/s; link dimensions approximate (see sim/assets/gp7/gp7.urdf). Estimates: link shapes, "
        "mass split, joint torques, the gripper (0.86 kg, 2 x 40 mm stroke, 60 N per jaw)"
    ),
    tool_down_ik=gp7_tool_down_ik,
    wrist_joint="gp7_gripper_mount",
    # Jaw pad friction (1.5) and friction anchors are set in the URDF's <contact> blocks.
)


class GP7(Robot):
    model = GP7_MODEL  # readable without a simulator (GP7.model.home); the instance sets the same

    def __init__(self, sim, config, name: str = "robot"):
        super().__init__(sim, GP7_MODEL, config, name)
