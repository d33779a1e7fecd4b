"""A three-axis Cartesian gantry in numpy: the bridge's physics-free robot (tests, benchmarks, demos).

A gantry's joints are its tool coordinates, so forward kinematics is the identity plus an
offset and every safety clamp has hand-computable results. ``SimulatedGantry`` implements the
controller's ``Robot`` interface with a first-order position lag, the way a stiff servo drive
follows its setpoint. genba/gantry_bundle.py wraps the same model as a Gymnasium env and exports
real policy bundles for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bridge.safety import float_list_kinematics

MODEL = "gantry-3"
JOINT_NAMES = ("x", "y", "z")
JOINT_LOWER = np.array([-0.5, -0.5, 0.0])  # m
JOINT_UPPER = np.array([0.5, 0.5, 0.6])  # m
JOINT_MAX_VELOCITY = np.array([0.5, 0.5, 0.5])  # m/s
JOINT_MAX_ACCELERATION = np.array([5.0, 5.0, 5.0])  # m/s^2
TOOL_OFFSET = np.array([0.0, 0.0, -0.1])  # m: tool centre point below the carriage
WORKSPACE_LOW = np.array([-0.4, -0.4, 0.0])  # m, tool box (tighter than the axes allow)
WORKSPACE_HIGH = np.array([0.4, 0.4, 0.45])
MAX_TOOL_SPEED = 0.6  # m/s
CONTROL_HZ = 20.0
OBS_DIM = 6  # joint positions (3), goal tool position (3)
ACT_DIM = 3  # joint deltas, normalized


def robot_spec() -> dict[str, Any]:
    """The manifest ``robot`` section for the gantry (what sim robots' ``describe()`` returns)."""
    return {
        "model": MODEL,
        "joint_names": list(JOINT_NAMES),
        "joint_lower": JOINT_LOWER.tolist(),
        "joint_upper": JOINT_UPPER.tolist(),
        "joint_max_velocity": JOINT_MAX_VELOCITY.tolist(),
        "joint_max_acceleration": JOINT_MAX_ACCELERATION.tolist(),
        "max_ee_speed": MAX_TOOL_SPEED,
        "workspace_low": WORKSPACE_LOW.tolist(),
        "workspace_high": WORKSPACE_HIGH.tolist(),
    }


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Tool xyz (m) for joint positions q (m)."""
    return np.asarray(q, dtype=np.float64)[:3] + TOOL_OFFSET


@float_list_kinematics
def forward_kinematics_floats(q: list[float]) -> list[float]:
    """forward_kinematics on float lists, as the SafetyFilter calls it each servo cycle (same values)."""
    return [q[0] + _OFFSET_X, q[1] + _OFFSET_Y, q[2] + _OFFSET_Z]


_OFFSET_X, _OFFSET_Y, _OFFSET_Z = TOOL_OFFSET.tolist()


def action_scale() -> np.ndarray:
    """Metres per control period for a normalized action of 1 (full speed)."""
    return JOINT_MAX_VELOCITY / CONTROL_HZ


def feature_spec() -> dict[str, Any]:
    """Same shape as ``sim`` envs' ``feature_spec()``: what the exporter writes into the manifest."""
    return {
        "observation": [
            {"name": "joint_position", "size": 3, "unit": "m"},
            {"name": "goal_tool_position", "size": 3, "unit": "m"},
        ],
        "action": {
            "kind": "joint_delta",
            "features": [{"name": "joint_delta", "size": 3, "unit": "m", "scale": action_scale().tolist()}],
            "meaning": "delta of each axis position target per control period: value * scale metres",
        },
        "control_hz": CONTROL_HZ,
        "robot": robot_spec(),
    }


class SimulatedGantry:
    """The controller-facing robot: read joints, observe, command joint positions."""

    joint_names = JOINT_NAMES

    def __init__(self, initial: np.ndarray | None = None, goal: np.ndarray | None = None, lag_s: float = 0.01) -> None:
        self.q = np.array([0.0, 0.0, 0.3] if initial is None else initial, dtype=np.float64)
        self.goal = np.array([0.2, -0.1, 0.2] if goal is None else goal, dtype=np.float64)
        self.lag_s = lag_s
        self.command = self.q.copy()
        self.commands: list[np.ndarray] = []  # every command received, for inspection
        self._last_ns: int | None = None

    def read_joints(self) -> np.ndarray:
        return self.q.copy()

    def observe(self) -> np.ndarray:
        return np.concatenate([self.q, self.goal]).astype(np.float32)

    def tool_position(self, q: np.ndarray) -> np.ndarray:
        return forward_kinematics(q)

    def send_joints(self, q: np.ndarray, now_ns: int) -> None:
        """Accept a servo command and advance the drive model to ``now_ns``."""
        if self._last_ns is not None:
            dt = (now_ns - self._last_ns) / 1e9
            self.q += (self.command - self.q) * min(1.0, dt / self.lag_s)
        self._last_ns = now_ns
        self.command = np.asarray(q, dtype=np.float64).copy()
        self.commands.append(self.command)
