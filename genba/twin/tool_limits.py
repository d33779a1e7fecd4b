"""The safety limits of the tool target (x, y, z, yaw) the twin streams, from the cell's own robot description."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bridge.limits import REDUCED_TOOL_SPEED, SafetyLimits
from bridge.safety import float_list_kinematics
from genba.twin.config import TwinError


def tool_target_limits(robot: dict[str, Any], yaw_rate: float, servo_hz: float, max_accel: float | None = None) -> SafetyLimits:
    """Safety limits of the tool target (x, y, z, yaw) from a cell's robot description (feature_spec()["robot"]).

    Speeds are the robot's rated tool speed per axis (what an action of 1 commands). The cells'
    robot specs rate no Cartesian acceleration and the policies step their target once per
    control period, so unless ``max_accel`` (m/s^2, or the spec's ``max_ee_acceleration``) is
    given, the stream may reverse at full speed between two servo cycles: the acceleration clamp
    then only shapes the stop to hold. The target may lead the measured tool as far as the cell
    lets it (``tool_target_max_lag``), and turn as far as its yaw limit (``tool_yaw_limit``).
    """
    v = float(robot["max_ee_speed"])
    yaw_limit, max_lag = float(robot["tool_yaw_limit"]), float(robot["tool_target_max_lag"])
    speed = np.array([v, v, v, yaw_rate])
    accel = max_accel if max_accel is not None else robot.get("max_ee_acceleration")
    acceleration = 2.0 * speed * servo_hz
    if accel is not None:
        if not accel > 0:
            raise TwinError(f"--max-tool-accel must be positive, got {accel}")
        acceleration[:3] = float(accel)
        acceleration[3] = float(accel) * yaw_rate / v  # the same time to full speed as the xyz axes
    return SafetyLimits(
        joint_names=("x", "y", "z", "yaw"),
        joint_lower=np.array([*robot["workspace_low"], -yaw_limit], dtype=float),
        joint_upper=np.array([*robot["workspace_high"], yaw_limit], dtype=float),
        max_velocity=speed,
        max_acceleration=acceleration,
        max_relative_target=np.array([max_lag] * 3 + [2 * yaw_limit]),
        workspace_low=np.asarray(robot["workspace_low"], dtype=float),
        workspace_high=np.asarray(robot["workspace_high"], dtype=float),
        max_tool_speed=v * math.sqrt(3.0),  # an action of 1 on every axis: what the cells allow
        reduced_tool_speed=REDUCED_TOOL_SPEED,
        model=str(robot.get("model", "")),
    )


@float_list_kinematics
def tool_xyz(q: list[float]) -> list[float]:
    """The tool position of a tool target: its first three coordinates (the safety filter's kinematics)."""
    return q[:3]
