"""The closed-form tool-down IK (sim/robots/tool_down_ik.py) for an arm given by URDF, where its geometry allows.

It applies to a 6-joint arm that is planar at its zero angles: joint 1 turns about the vertical through
the base origin, joints 2, 3 and 5 (shoulder, elbow, wrist bend) about axes normal to one vertical plane
through that axis, joints 4 and 6 about axes in the plane, and the tool point lies in the plane with its
approach axis along joint 6's. Joint 4 at zero then keeps the whole arm in the plane as it points the
tool down: the GP7's layout, most 6-axis industrial arms' (Yaskawa, KUKA KR, ABB IRB, Fanuc) and the
xArm6's. The geometry is read from a kinematic copy at zero angles, and the fitted solution is checked
by forward kinematics over the arm's tool-down reach, inside its joint limits; an arm that fails any
check keeps the numerical IK, and `fit_tool_down_ik` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as pb

from sim.robots.tool_down_ik import PlanarArm, nearest_turn

AXIS_TOLERANCE = 1e-4  # |sin| of the angle between axes that count as parallel (or |cos| as normal)
PLANE_TOLERANCE = 1e-4  # m a point may lie off the arm's plane
FIT_TOLERANCE = (1e-4, 1e-3)  # m, rad: how close every checked solution must put the tool
CHECK_AZIMUTHS = (-1.0, -0.3, 0.4, 1.1)  # rad about the base axis, the checked targets' directions
CHECK_YAWS = (-1.2, 0.0, 0.7)  # rad of tool yaw relative to the target's direction
CHECK_REACH = (0.45, 0.7, 0.9)  # fractions of the reach table's radius at each height


@dataclass(frozen=True)
class PlanarToolDownIK:
    """Joint angles for the tool straight down at (x, y, z) (m, base frame), turned by yaw (rad)."""

    plane: PlanarArm  # the arm in its plane, r along the plane's direction at joint 1 = 0
    azimuth: float  # rad: that direction in the base frame
    signs: tuple[float, float, float, float]  # +1/-1 per joint 1, 2, 3, 5: its axis along (+) or against the frame's
    tool_down: float  # rad: the plane angle of the wrist that points the tool down
    yaw_sign: float  # joint 6's turn of the pointing-down tool, +1 along world z
    yaw_offset: float  # rad: the tool's yaw minus the target's direction with joint 6 at zero

    def __call__(self, x: float, y: float, z: float, yaw: float, previous: list[float]) -> list[float]:
        s1, s2, s3, s5 = self.signs
        base, upper, fore = self.plane.solve(x, y, z)
        q1 = math.remainder(s1 * (base - self.azimuth), 2 * math.pi)
        q6 = nearest_turn(self.yaw_sign * (yaw - base - self.yaw_offset), previous[5])
        return [q1, s2 * upper, s3 * (fore - upper), 0.0, s5 * (self.tool_down - fore), q6]


def _rotate(v: tuple[float, float], t: float) -> tuple[float, float]:
    """(r, z) turned by t about the plane's normal, +z toward +r (the convention of tool_down_ik.py)."""
    return (v[0] * math.cos(t) + v[1] * math.sin(t), -v[0] * math.sin(t) + v[1] * math.cos(t))


def _parallel(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.linalg.norm(np.cross(a, b))) < AXIS_TOLERANCE


def fit_tool_down_ik(solver, home: tuple[float, ...],
                     reach: tuple[tuple[float, float], ...]) -> tuple[PlanarToolDownIK | None, str]:
    """(the closed form, "") for an arm of the planar layout above, else (None, why it does not apply).

    solver: the arm's kinematic copy as sim/robots/user.py's ToolDownSolver gives it (copy, movable, n, tool,
    lower, upper, pose(q)); home: the arm's home angles (picks the elbow solution); reach: the tool-down reach
    table ((z, r) ...).
    """
    if solver.n != 6:
        return None, f"{solver.n} arm joints (the closed form is for 6)"
    cid, body = solver.copy.cid, solver.copy.body
    arm = solver.movable[:solver.n]
    infos = [pb.getJointInfo(body, j, physicsClientId=cid) for j in arm]
    if any(info[2] != pb.JOINT_REVOLUTE for info in infos):
        return None, "a prismatic arm joint"
    tool_point, rot = solver.pose([0.0] * solver.n)  # also sets every joint to 0 for the axes below
    approach = rot[:, 2]
    points, axes = [], []
    for j, info in zip(arm, infos):
        state = pb.getLinkState(body, j, computeForwardKinematics=1, physicsClientId=cid)
        points.append(np.array(state[4]))
        axes.append(np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3) @ np.array(info[13]))
    up = np.array([0.0, 0.0, 1.0])
    if not _parallel(axes[0], up) or np.hypot(*points[0][:2]) > PLANE_TOLERANCE:
        return None, "joint 1 does not turn about the vertical through the base origin"
    normal = axes[1] / np.linalg.norm(axes[1])
    if abs(normal @ up) > AXIS_TOLERANCE:
        return None, "joint 2's axis is not horizontal"
    if not all(_parallel(axes[i], normal) for i in (2, 4)):
        return None, "joints 2, 3 and 5 do not turn about parallel axes"
    if any(abs(axes[i] @ normal) > AXIS_TOLERANCE for i in (3, 5)) or abs(approach @ normal) > AXIS_TOLERANCE:
        return None, "joint 4's or 6's axis, or the tool's approach, leaves the arm's plane"
    if not _parallel(axes[5], approach):
        return None, "the tool's approach is not along joint 6's axis"
    if any(abs(p @ normal) > PLANE_TOLERANCE for p in (points[3], points[5], tool_point)):
        return None, "joint 4's or 6's axis, or the tool point, lies off the arm's plane"
    forward = np.cross(normal, up)  # the plane's r direction: a turn about `normal` takes z toward it

    def in_plane(p: np.ndarray) -> tuple[float, float]:
        return float(p @ forward), float(p[2])

    shoulder, elbow, wrist = in_plane(points[1]), in_plane(points[2]), in_plane(points[4])
    tool_r, tool_z = in_plane(tool_point)
    d = (float(approach @ forward), float(approach[2]))
    tool_down = math.atan2(d[0], -d[1])
    planes = [PlanarArm(shoulder=shoulder, upper=(elbow[0] - shoulder[0], elbow[1] - shoulder[1]),
                        fore=(wrist[0] - elbow[0], wrist[1] - elbow[1]),
                        wrist_to_tool=_rotate((tool_r - wrist[0], tool_z - wrist[1]), tool_down), elbow=e) for e in (1, -1)]
    signs = (float(np.sign(axes[0] @ up)), 1.0, float(np.sign(axes[2] @ normal)), float(np.sign(axes[4] @ normal)))
    azimuth = math.atan2(forward[1], forward[0])
    lower, upper, fk = solver.lower, solver.upper, solver.pose

    home_pos, _ = fk(home)
    solvers = [PlanarToolDownIK(p, azimuth, signs, tool_down, 1.0, 0.0) for p in planes]
    # The elbow solution of the home pose; then joint 6's sense and zero from two forward solutions.
    ik = min(solvers, key=lambda s: np.linalg.norm(np.array(s(*home_pos, 0.0, [0.0] * 6)[:3]) - home[:3]))
    base = math.atan2(home_pos[1], home_pos[0])
    q = ik(*home_pos, 0.0, [0.0] * 6)
    yaws = []
    for q6 in (0.0, 0.3):
        _, rot = fk(q[:5] + [q6])
        yaws.append(math.atan2(rot[1, 0], rot[0, 0]))
    sign = 1.0 if math.remainder(yaws[1] - yaws[0], 2 * math.pi) > 0 else -1.0
    ik = PlanarToolDownIK(ik.plane, azimuth, signs, tool_down, sign, math.remainder(yaws[0] - base, 2 * math.pi))

    for z, r in reach:
        for frac in CHECK_REACH:
            for a in CHECK_AZIMUTHS:
                for dyaw in CHECK_YAWS:
                    target = np.array([frac * r * math.cos(a), frac * r * math.sin(a), z])
                    q = ik(*target, a + dyaw, [0.0] * 6)
                    outside = np.flatnonzero((np.array(q) < lower - 1e-9) | (np.array(q) > upper + 1e-9))
                    if outside.size:  # the numerical IK may take another posture there; this family cannot
                        return None, (f"its tool-down posture leaves joint {outside[0] + 1}'s range at "
                                      f"({target[0]:.2f}, {target[1]:.2f}, {target[2]:.2f}) m")
                    pos, rot = fk(q)
                    yaw_error = abs(math.remainder(math.atan2(rot[1, 0], rot[0, 0]) - (a + dyaw), 2 * math.pi))
                    tilt = math.acos(max(-1.0, min(1.0, -rot[2, 2])))
                    if np.linalg.norm(pos - target) > FIT_TOLERANCE[0] or max(tilt, yaw_error) > FIT_TOLERANCE[1]:
                        return None, (f"the fitted closed form missed a check target by {np.linalg.norm(pos - target) * 1000:.2f} mm, "
                                      f"{max(tilt, yaw_error):.4f} rad")
    return ik, ""
