"""Closed-form IK for the pose every cell uses: tool pointing straight down, turned by a yaw.

Both shipped arms have a posture family for it in which every link stays in the vertical plane
through the base axis: the base joint aims the plane at the target, two joints (shoulder, elbow)
place the wrist in the plane, a wrist joint keeps the flange vertical, and the last joint sets the
yaw. That is a planar two-link problem plus a few angle sums: a handful of trig calls in plain
Python, where PyBullet's iterative IK on a second Bullet client cost the env step more time than
all of its other work together (bench/sim_throughput.py). The redundant Panda is kept in this
family (its joints 3 and 5 at zero), which is also the posture its home pose has.

Angles follow one convention: `forward(v, t)` turns a vector v = (r, z) of the arm plane by t
toward the front (+r) of the robot, as a positive shoulder angle leans the arm forward.
"""

from __future__ import annotations

import math


class PlanarArm:
    """The plane geometry of a tool-down arm, in metres in its base frame (r radial, z up)."""

    def __init__(
        self,
        shoulder: tuple[float, float],  # the shoulder joint's axis point at base angle 0
        upper: tuple[float, float],  # shoulder -> elbow axis, upper-arm angle 0
        fore: tuple[float, float],  # elbow -> wrist axis, forearm angle 0
        wrist_to_tool: tuple[float, float],  # wrist axis -> tool point with the tool pointing down
        elbow: int,  # +1 or -1: which of the two elbow solutions the arm's home pose uses
    ) -> None:
        self.shoulder, self.upper, self.fore, self.wrist_to_tool, self.elbow = shoulder, upper, fore, wrist_to_tool, elbow
        # Where the wrist sits relative to the shoulder is what the two links must span.
        self._r0, self._z0 = wrist_to_tool[0] + shoulder[0], wrist_to_tool[1] + shoulder[1]
        self._a, self._b = math.hypot(*upper), math.hypot(*fore)
        # Polar angles (from +r toward +z) of the two links at angle 0; forward(v, t) subtracts t.
        self._alpha_a, self._alpha_b = math.atan2(upper[1], upper[0]), math.atan2(fore[1], fore[0])

    def solve(self, x: float, y: float, z: float) -> tuple[float, float, float]:
        """Base angle and the absolute angles of upper arm and forearm placing the tool at (x, y, z).

        Out of reach, the arm stretches toward the target instead of failing.
        """
        a, b = self._a, self._b
        u, v = math.hypot(x, y) - self._r0, z - self._z0
        cos_g = (u * u + v * v - a * a - b * b) / (2 * a * b)
        gamma = self.elbow * math.acos(-1.0 if cos_g < -1.0 else 1.0 if cos_g > 1.0 else cos_g)
        polar_a = math.atan2(v, u) - math.atan2(b * math.sin(gamma), a + b * math.cos(gamma))
        return math.atan2(y, x), self._alpha_a - polar_a, self._alpha_b - polar_a - gamma


def nearest_turn(angle: float, reference: float) -> float:
    """`angle` plus whole turns, as close as possible to `reference` (keeps a wrist from spinning)."""
    return angle + 2.0 * math.pi * round((reference - angle) / (2.0 * math.pi))


def to_base_frame(position, yaw: float, base_xyz: tuple[float, float, float], base_yaw: float) -> tuple[float, float, float, float]:
    """A world tool target as (x, y, z, yaw) in a robot's base frame."""
    x, y, z = position[0] - base_xyz[0], position[1] - base_xyz[1], position[2] - base_xyz[2]
    if base_yaw != 0.0:
        c, s = math.cos(base_yaw), math.sin(base_yaw)
        x, y = c * x + s * y, -s * x + c * y
    return x, y, z, yaw - base_yaw
