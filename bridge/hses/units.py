"""HSES units <-> SI: joint pulses, micrometres, 0.0001 degree, and the speed words of a move.

The wire units are the manual's (FS100 HSES manual 160766-1CD, robot position data and move
instruction commands; fs100.py's `mov`/`pmov` docstrings say the same): positions in um, angles in
0.0001 deg, speeds in 0.01 % (joint), 0.1 mm/s (linear) or 0.1 deg/s (angular). Joint angles travel
as encoder pulses, and how many pulses make a degree is a property of each robot's axes (controller
parameters), so it comes from an `HsesAxes` description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bridge.hses.errors import HsesValueError
from bridge.hses.payloads import SpeedClass

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UM_PER_M = 1_000_000
ANGLE_UNITS_PER_DEG = 10_000  # 0.0001 deg per unit
PERCENT_UNITS = 100  # 0.01 % per unit
LINEAR_UNITS_PER_MM_S = 10  # 0.1 mm/s per unit
ANGULAR_UNITS_PER_DEG_S = 10  # 0.1 deg/s per unit


def _int32(value: float, what: str) -> int:
    if not math.isfinite(value):
        raise HsesValueError(f"{what}: {value} is not a finite number")
    rounded = int(round(value))
    if not INT32_MIN <= rounded <= INT32_MAX:
        raise HsesValueError(f"{what}: {rounded} does not fit a signed 32-bit word")
    return rounded


@dataclass(frozen=True)
class HsesAxes:
    """A robot's axes as the controller counts them: names and encoder pulses per degree of joint travel.

    Pulse 0 is the joint's zero and the sign is the joint's (a real controller's pulse origin and
    direction per axis are its calibration; a robot whose zeros differ needs offsets added here).
    """

    names: tuple[str, ...]
    pulses_per_degree: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.pulses_per_degree) or not 1 <= len(self.names) <= 8:
            raise HsesValueError(f"HsesAxes: {len(self.names)} names and {len(self.pulses_per_degree)} pulse rates; "
                                 "give one rate per axis, 1-8 axes")
        if not all(p > 0 and math.isfinite(p) for p in self.pulses_per_degree):
            raise HsesValueError(f"HsesAxes: pulses per degree must be positive, got {self.pulses_per_degree}")

    @property
    def count(self) -> int:
        return len(self.names)

    def radians_to_pulses(self, joints_rad: Sequence[float]) -> tuple[int, ...]:
        """Joint angles (rad) -> pulses, rounded to the nearest pulse."""
        self._check(joints_rad)
        return tuple(_int32(math.degrees(q) * p, f"axis {n}") for q, p, n in zip(joints_rad, self.pulses_per_degree, self.names))

    def pulses_to_radians(self, pulses: Sequence[int]) -> np.ndarray:
        """Pulses -> joint angles (rad); extra words beyond this robot's axes (axes 7-8 on the wire) are ignored."""
        if len(pulses) < self.count:
            raise HsesValueError(f"{len(pulses)} pulse values for {self.count} axes ({', '.join(self.names)})")
        return np.radians(np.asarray(pulses[: self.count], dtype=float) / np.asarray(self.pulses_per_degree))

    def _check(self, values: Sequence[float]) -> None:
        if len(values) != self.count:
            raise HsesValueError(f"{len(values)} joint values for {self.count} axes ({', '.join(self.names)})")


# genba's declared values for its GP7-class arm: Yaskawa publishes no pulse counts for the GP7 (a real
# controller reports its own in its parameters), so these are round numbers of the right order (one
# pulse is 0.001 deg on S/L/U) chosen here; replace them with the controller's for a real robot.
GP7_AXES = HsesAxes(names=("S", "L", "U", "R", "B", "T"), pulses_per_degree=(1000.0, 1000.0, 1000.0, 800.0, 800.0, 500.0))


def metres_to_micrometres(metres: float) -> int:
    return _int32(metres * UM_PER_M, "position (um)")


def micrometres_to_metres(micrometres: int) -> float:
    return micrometres / UM_PER_M


def radians_to_angle_units(radians: float) -> int:
    """rad -> the wire's 0.0001 deg units."""
    return _int32(math.degrees(radians) * ANGLE_UNITS_PER_DEG, "angle (0.0001 deg)")


def angle_units_to_radians(units: int) -> float:
    """The wire's 0.0001 deg units -> rad."""
    return math.radians(units / ANGLE_UNITS_PER_DEG)


def pose_to_wire(position_m: Sequence[float], rotation_rad: Sequence[float]) -> tuple[int, int, int, int, int, int]:
    """(x, y, z) in m and (Rx, Ry, Rz) in rad -> X, Y, Z in um and Rx, Ry, Rz in 0.0001 deg."""
    if len(position_m) != 3 or len(rotation_rad) != 3:
        raise HsesValueError(f"a pose is 3 coordinates and 3 rotations, got {len(position_m)} and {len(rotation_rad)}")
    x, y, z = (metres_to_micrometres(v) for v in position_m)
    rx, ry, rz = (radians_to_angle_units(v) for v in rotation_rad)
    return x, y, z, rx, ry, rz


def pose_from_wire(pose: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """X, Y, Z (um) and Rx, Ry, Rz (0.0001 deg) -> position (m) and rotation (rad) arrays."""
    return (np.array([micrometres_to_metres(v) for v in pose[:3]]),
            np.array([angle_units_to_radians(v) for v in pose[3:6]]))


@dataclass(frozen=True)
class MoveSpeed:
    """A move's speed in human units: % of each axis's maximum (joint moves), mm/s or deg/s of the tool (linear)."""

    speed_class: SpeedClass
    value: float

    @classmethod
    def joint_percent(cls, percent: float) -> MoveSpeed:
        return cls(SpeedClass.PERCENT, percent)

    @classmethod
    def linear_mm_s(cls, mm_per_s: float) -> MoveSpeed:
        return cls(SpeedClass.LINEAR, mm_per_s)

    @classmethod
    def angular_deg_s(cls, deg_per_s: float) -> MoveSpeed:
        return cls(SpeedClass.ANGULAR, deg_per_s)

    def wire(self) -> tuple[int, int]:
        """(speed class, speed word): 0.01 %, 0.1 mm/s or 0.1 deg/s. Whether a speed is in range is the controller's
        call (0 gets 0xB009 there); only what cannot be encoded (negative, beyond 32 bits) is refused here."""
        scale = {SpeedClass.PERCENT: PERCENT_UNITS, SpeedClass.LINEAR: LINEAR_UNITS_PER_MM_S,
                 SpeedClass.ANGULAR: ANGULAR_UNITS_PER_DEG_S}[SpeedClass(self.speed_class)]
        word = _int32(self.value * scale, f"speed ({SpeedClass(self.speed_class).name})")
        if word < 0:
            raise HsesValueError(f"speed {self.value} ({SpeedClass(self.speed_class).name}) is negative")
        return int(self.speed_class), word

    @classmethod
    def from_wire(cls, speed_class: int, word: int) -> MoveSpeed:
        scale = {0: PERCENT_UNITS, 1: LINEAR_UNITS_PER_MM_S, 2: ANGULAR_UNITS_PER_DEG_S}
        if speed_class not in scale:
            raise HsesValueError(f"speed class {speed_class}: expected 0 (%), 1 (mm/s) or 2 (deg/s)")
        return cls(SpeedClass(speed_class), word / scale[speed_class])


# Torque words (0x77) are a ratio to the axis's rated torque. The manual's unit is taken as 1 % per unit;
# no public source we could read states the scale, so genba's emulator and docs name this one constant.
TORQUE_UNITS_PER_PERCENT = 1
