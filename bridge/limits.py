"""Safety limits of one robot, read from a bundle manifest's ``robot`` section or the welcome message.

The controller's own robot model is authoritative; when both it and the bundle declare limits,
``tighten`` keeps the stricter value of each so a bundle can never loosen what the cell allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from bridge.errors import BridgeError

# ISO 10218-1 reduced speed: at most 250 mm/s at the tool centre point.
REDUCED_TOOL_SPEED = 0.25  # m/s
# When a robot model gives no acceleration limit: reach full joint speed in this long.
DEFAULT_TIME_TO_FULL_SPEED = 0.2  # s
# When a robot model gives no per-command cap: never command further than this much motion
# at full speed away from where the robot is measured to be.
DEFAULT_RELATIVE_TARGET_HORIZON = 0.1  # s


class LimitsError(BridgeError):
    """A robot spec whose limits are missing, of the wrong size or inconsistent."""


def _vector(spec: Mapping[str, Any], key: str, n: int | None, where: str) -> np.ndarray:
    if key not in spec:
        raise LimitsError(f"{where}: missing {key!r}")
    try:
        value = np.asarray(spec[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise LimitsError(f"{where}.{key}: expected a list of numbers, got {spec[key]!r}") from None
    if value.ndim == 0 and n is not None:
        value = np.full(n, float(value))
    if value.ndim != 1 or (n is not None and value.shape[0] != n):
        raise LimitsError(f"{where}.{key}: expected {n} numbers, got shape {value.shape}")
    if not np.all(np.isfinite(value)):
        raise LimitsError(f"{where}.{key}: values must be finite, got {value.tolist()}")
    return value


@dataclass(frozen=True)
class SafetyLimits:
    joint_names: tuple[str, ...]
    joint_lower: np.ndarray  # rad
    joint_upper: np.ndarray  # rad
    max_velocity: np.ndarray  # rad/s
    max_acceleration: np.ndarray  # rad/s^2
    max_relative_target: np.ndarray  # rad: cap on |command - measured position|
    workspace_low: np.ndarray  # m, tool xyz
    workspace_high: np.ndarray  # m, tool xyz
    max_tool_speed: float  # m/s
    reduced_tool_speed: float = REDUCED_TOOL_SPEED  # m/s
    model: str = field(default="")

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @classmethod
    def from_robot_spec(cls, robot: Mapping[str, Any], where: str = "robot") -> SafetyLimits:
        """Build from a manifest ``robot`` section (or a welcome message's ``limits``)."""
        if not isinstance(robot, Mapping):
            raise LimitsError(f"{where}: expected a mapping, got {type(robot).__name__}")
        names = robot.get("joint_names")
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise LimitsError(f"{where}.joint_names: expected a non-empty list of joint names, got {names!r}")
        n = len(names)
        lower = _vector(robot, "joint_lower", n, where)
        upper = _vector(robot, "joint_upper", n, where)
        if np.any(lower >= upper):
            bad = [names[i] for i in np.flatnonzero(lower >= upper)]
            raise LimitsError(f"{where}: joint_lower must be below joint_upper for {bad}")
        velocity = _vector(robot, "joint_max_velocity", n, where)
        if np.any(velocity <= 0):
            raise LimitsError(f"{where}.joint_max_velocity: must be positive, got {velocity.tolist()}")
        if "joint_max_acceleration" in robot:
            acceleration = _vector(robot, "joint_max_acceleration", n, where)
        else:
            acceleration = velocity / DEFAULT_TIME_TO_FULL_SPEED
        if np.any(acceleration <= 0):
            raise LimitsError(f"{where}.joint_max_acceleration: must be positive, got {acceleration.tolist()}")
        if "max_relative_target" in robot:
            relative = _vector(robot, "max_relative_target", n, where)
        else:
            relative = velocity * DEFAULT_RELATIVE_TARGET_HORIZON
        low = _vector(robot, "workspace_low", 3, where)
        high = _vector(robot, "workspace_high", 3, where)
        if np.any(low >= high):
            raise LimitsError(f"{where}: workspace_low {low.tolist()} must be below workspace_high {high.tolist()}")
        tool_speed = robot.get("max_ee_speed")
        if isinstance(tool_speed, bool) or not isinstance(tool_speed, (int, float)) or not tool_speed > 0:
            raise LimitsError(f"{where}.max_ee_speed: expected a positive speed in m/s, got {tool_speed!r}")
        return cls(
            joint_names=tuple(names),
            joint_lower=lower,
            joint_upper=upper,
            max_velocity=velocity,
            max_acceleration=acceleration,
            max_relative_target=relative,
            workspace_low=low,
            workspace_high=high,
            max_tool_speed=float(tool_speed),
            reduced_tool_speed=min(REDUCED_TOOL_SPEED, float(tool_speed)),
            model=str(robot.get("model", "")),
        )

    def to_robot_spec(self) -> dict[str, Any]:
        """The wire form (welcome message ``limits``), readable by ``from_robot_spec``."""
        return {
            "model": self.model,
            "joint_names": list(self.joint_names),
            "joint_lower": self.joint_lower.tolist(),
            "joint_upper": self.joint_upper.tolist(),
            "joint_max_velocity": self.max_velocity.tolist(),
            "joint_max_acceleration": self.max_acceleration.tolist(),
            "max_relative_target": self.max_relative_target.tolist(),
            "workspace_low": self.workspace_low.tolist(),
            "workspace_high": self.workspace_high.tolist(),
            "max_ee_speed": self.max_tool_speed,
        }

    def tighten(self, other: SafetyLimits) -> SafetyLimits:
        """The stricter of two limit sets for the same joints (controller's model vs bundle's)."""
        if other.joint_names != self.joint_names:
            raise LimitsError(f"joint names differ: controller {list(self.joint_names)} vs bundle {list(other.joint_names)}")
        return SafetyLimits(
            joint_names=self.joint_names,
            joint_lower=np.maximum(self.joint_lower, other.joint_lower),
            joint_upper=np.minimum(self.joint_upper, other.joint_upper),
            max_velocity=np.minimum(self.max_velocity, other.max_velocity),
            max_acceleration=np.minimum(self.max_acceleration, other.max_acceleration),
            max_relative_target=np.minimum(self.max_relative_target, other.max_relative_target),
            workspace_low=np.maximum(self.workspace_low, other.workspace_low),
            workspace_high=np.minimum(self.workspace_high, other.workspace_high),
            max_tool_speed=min(self.max_tool_speed, other.max_tool_speed),
            reduced_tool_speed=min(self.reduced_tool_speed, other.reduced_tool_speed),
            model=self.model,
        )
