"""Compliant mode of the arm: admittance on the wrist wrench (robot.compliance; needs robot.wrist_ft).

The position-controlled arm is stiff: a tool target inside a part makes the joint motors push up to
their torque limits. Admittance makes the command yield instead: the IK is given

    x_cmd = x_target + x_c,   damping * dx_c/dt + stiffness * x_c = F   (per world axis)

with F the sensed external force on the tool (N, world frame, the noisy filtered reading a controller
has), stiffness in N/m, damping in N s/m. It is integrated once per control step with implicit Euler,
x_c <- (damping * x_c + dt * F) / (damping + dt * stiffness), stable for any gains in free space; in
contact with a surface of stiffness k it stays monotone while dt * (k + stiffness) < damping. Forces
within +-deadband N are taken as zero, and |x_c| stays within max_offset per axis. At rest against a
surface the tool pushes with about stiffness * (how far the target lies inside it).
"""

from __future__ import annotations

from scenarios.schema import ComplianceConfig


class Admittance:
    def __init__(self, config: ComplianceConfig, dt: float):
        self.config, self.dt = config, dt
        self._k, self._d = config.stiffness, config.damping
        self._band, self._limit = config.deadband, config.max_offset
        self.reset()

    def reset(self) -> None:
        self.offset = (0.0, 0.0, 0.0)  # x_c (m, world)

    def update(self, force) -> tuple[float, float, float]:
        """One control period with the sensed world-frame force (N); returns the new x_c (m)."""
        self.offset = (self._axis(0, force[0]), self._axis(1, force[1]), self._axis(2, force[2]))
        return self.offset

    def _axis(self, i: int, f: float) -> float:
        band, lim, dt, d = self._band, self._limit, self.dt, self._d[i]
        f = 0.0 if -band < f < band else f - band if f > 0 else f + band
        x = (d * self.offset[i] + dt * f) / (d + dt * self._k[i])
        return -lim if x < -lim else lim if x > lim else x
