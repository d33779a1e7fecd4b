"""A vacuum suction cup: it holds a part by a force-limited fixed constraint while sealed on one of its faces.

Semantics (robot.tool: {type: suction}, scenarios/schema/robot.py SuctionToolConfig):
- vacuum on (the action's last value > 0): after each physics step, the cup seals on a body it
  touches when the cup face lies within seal_tolerance of a flat face of that body, the face's normal
  is within seal_angle of the cup's axis, and the whole lip lies on that face (a cup half over an edge
  leaks). Sealing creates a JOINT_FIXED constraint from the cup link to the body at their relative
  pose then, with maxForce = max_holding_force.
- Bullet caps each of the constraint's rows at maxForce (an impulse of maxForce x dt per substep),
  so a part whose weight plus inertia needs more than that sags away from the cup; once it is
  max_stretch off its sealed pose (or turned by seal_angle) the seal is lost: the constraint goes
  and the part drops, counted in `losses`. A part is held with its face flush on the cup face, and the
  two keep colliding: the cup pushes on a part through that contact (any force), the constraint only
  pulls. The arm's position servo jerks the tool at each new target, well beyond what it averages over
  a control period; the stretch lets a part within the force lag through such a jerk and come back.
- vacuum off: released at once.
"""

from __future__ import annotations

import math

import pybullet as pb

from scenarios.schema import SuctionToolConfig
from sim.simulator import Simulator

# Only dynamic bodies (mass > 0) are picked: a fixture or the belt never seals.
MIN_MASS = 1e-6  # kg


class SuctionCup:
    def __init__(self, sim: Simulator, robot_body: int, cup_link: int, config: SuctionToolConfig):
        self.sim, self.robot_body, self.cup_link, self.config = sim, robot_body, cup_link, config
        self._cos_seal = math.cos(config.seal_angle)
        self._boxes: dict[int, tuple[float, float, float] | None] = {}  # body -> half extents of its box shape (None: not a box)
        self.reset()

    def reset(self) -> None:
        """Vacuum off, nothing held (a state restore leaves user constraints in place: remove ours)."""
        if getattr(self, "constraint", None) is not None:
            self._release()
        self.vacuum = False
        self.held: int | None = None  # body id of the part on the cup
        self.constraint: int | None = None
        self._rel: tuple | None = None  # the part's pose in the cup link's frame when it sealed
        self.losses = 0  # seals lost with the vacuum on since reset (a part slipped off)

    @property
    def sealed(self) -> bool:
        return self.held is not None

    def command(self, vacuum: bool) -> None:
        """Called with each command sent to the motors: switching the vacuum off releases at once."""
        self.vacuum = vacuum
        if not vacuum and self.held is not None:
            self._release()

    def update(self) -> None:
        """After physics: seal on a touched face, or check that the held part still sits on the cup."""
        if not self.vacuum:
            return
        if self.held is None:
            self._try_seal()
        else:
            self._check_seal()

    # --- sealing ------------------------------------------------------------------------------------
    def _cup_pose(self) -> tuple:
        """The cup link's frame (URDF frame: the cup face, z out of it) in the world."""
        s = pb.getLinkState(self.robot_body, self.cup_link, computeForwardKinematics=1, physicsClientId=self.sim.cid)
        return s[4], s[5]

    def _try_seal(self) -> None:
        cid = self.sim.cid
        contacts = pb.getContactPoints(bodyA=self.robot_body, linkIndexA=self.cup_link, physicsClientId=cid)
        if not contacts:
            return
        cup_pos, cup_orn = self._cup_pose()
        axis = _z_axis(cup_orn)  # out of the cup face
        for body in sorted({c[2] for c in contacts}):
            if body == self.robot_body or not self._dynamic(body):
                continue
            half = self._half_extents(body)
            if half is None:
                continue
            gap = self._face_gap(body, half, cup_pos, axis)
            if gap is not None:
                self._seal(body, [a * gap for a in axis])
                return

    def _face_gap(self, body: int, half, cup_pos, axis) -> float | None:
        """The cup face on the body's face that looks back at it, square and with the lip all on it: the
        gap between the two faces (m; < 0 pressed in), or None when the cup does not seal there."""
        pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=self.sim.cid)
        rot = pb.getMatrixFromQuaternion(orn, physicsClientId=self.sim.cid)
        axes = [(rot[0 + i], rot[3 + i], rot[6 + i]) for i in range(3)]  # the body's x, y, z in the world
        # The face whose outward normal is most against the cup's axis.
        dots = [sum(a * b for a, b in zip(ax, axis)) for ax in axes]
        k = max(range(3), key=lambda i: abs(dots[i]))
        if abs(dots[k]) < self._cos_seal:
            return None
        rel = [c - p for c, p in zip(cup_pos, pos)]
        local = [sum(r * a for r, a in zip(rel, ax)) for ax in axes]  # cup centre in the body frame
        sign = -1.0 if dots[k] > 0 else 1.0  # the face's side: its normal points back at the cup
        gap = sign * local[k] - half[k]  # cup face to box face along the normal (m; < 0 pressed in)
        if abs(gap) > self.config.seal_tolerance:
            return None
        r = self.config.cup_radius
        return gap if all(abs(local[i]) + r <= half[i] + 1e-9 for i in range(3) if i != k) else None

    def _seal(self, body: int, shift) -> None:
        """Hold `body` where it is, moved by `shift` (m, world) so that its face lies on the cup face.

        The cup and the part keep colliding: pushing down on a part is the cup's rim on it (any force),
        the constraint only has to pull (up to the holding force). Held with its face flush, the contact
        and the constraint want the same pose and do not fight.
        """
        cid = self.sim.cid
        # The constraint's parent frame is relative to the cup link's centre of mass frame, the child's to the body's.
        s = pb.getLinkState(self.robot_body, self.cup_link, computeForwardKinematics=1, physicsClientId=cid)
        com_inv = pb.invertTransform(s[0], s[1])
        pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=cid)
        pos = [p - d for p, d in zip(pos, shift)]
        rel_pos, rel_orn = pb.multiplyTransforms(com_inv[0], com_inv[1], pos, orn)
        self.constraint = pb.createConstraint(self.robot_body, self.cup_link, body, -1, pb.JOINT_FIXED, [0, 0, 0],
                                              rel_pos, [0, 0, 0], rel_orn, [0, 0, 0, 1], physicsClientId=cid)
        pb.changeConstraint(self.constraint, maxForce=self.config.max_holding_force, physicsClientId=cid)
        self.held, self._rel = body, (rel_pos, rel_orn)

    def _check_seal(self) -> None:
        """The held part slid or turned past the seal's tolerance (the force cap gave way): it drops."""
        cid = self.sim.cid
        s = pb.getLinkState(self.robot_body, self.cup_link, computeForwardKinematics=1, physicsClientId=cid)
        want_pos, want_orn = pb.multiplyTransforms(s[0], s[1], *self._rel)
        pos, orn = pb.getBasePositionAndOrientation(self.held, physicsClientId=cid)
        off = math.dist(pos, want_pos)
        dot = abs(sum(a * b for a, b in zip(orn, want_orn)))
        angle = 2.0 * math.acos(min(1.0, dot))
        if off > self.config.max_stretch or angle > self.config.seal_angle:
            self._release()
            self.losses += 1

    def _release(self) -> None:
        cid = self.sim.cid
        if self.constraint is not None:
            pb.removeConstraint(self.constraint, physicsClientId=cid)
        self.held, self.constraint, self._rel = None, None, None

    # --- bodies -------------------------------------------------------------------------------------
    def _dynamic(self, body: int) -> bool:
        return pb.getDynamicsInfo(body, -1, physicsClientId=self.sim.cid)[0] > MIN_MASS

    def _half_extents(self, body: int):
        """Half extents of a body made of one box (its base), cached; None for any other shape."""
        if body not in self._boxes:
            shapes = pb.getCollisionShapeData(body, -1, physicsClientId=self.sim.cid)
            box = len(shapes) == 1 and shapes[0][2] == pb.GEOM_BOX
            self._boxes[body] = tuple(d / 2 for d in shapes[0][3]) if box else None
        return self._boxes[body]


def _z_axis(quat) -> tuple[float, float, float]:
    x, y, z, w = quat
    return (2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y))
