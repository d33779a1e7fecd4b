"""The peg-insert cell's parts: a square peg held in the gripper and a fixture block with a square hole.

PyBullet has no boolean geometry, so the block is four slabs around the hole, one body per side: each
side moves out by half the episode's clearance and with the episode's position error, so the hole is
resized and moved without rebuilding shapes. Boxes only: Bullet keeps a box's collision margin inside
its extents, where a convex hull's margin (1 mm) would swallow a 0.5 mm clearance. A side is a slab
below the chamfer, a slab set back by the chamfer above it, and a square bar turned 45 degrees whose
upper face is the chamfer (its other faces lie inside the slabs).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pybullet as pb

from scenarios.schema import HoleConfig, PegConfig
from sim.simulator import Simulator

SIDES = ("px", "nx", "py", "ny")  # the side of the hole each slab closes: +x, -x, +y, -y


class Peg:
    """A square peg fixed to the robot's tool link (a rigid grasp): collisions with the gripper are off,
    the jaws are closed on it by the grip command the task hands the expert (`grip`)."""

    def __init__(self, sim: Simulator, robot, config: PegConfig, name: str = "peg"):
        self.sim, self.robot, self.config = sim, robot, config
        cid = sim.cid
        w, length = config.width, config.length
        half = [w / 2, w / 2, length / 2]
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=cid)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=list(config.color), physicsClientId=cid)
        # Peg centre in the tool frame (z along the approach direction): grip_depth of it above the tool point.
        self.offset = length / 2 - config.grip_depth
        self.tip_offset = length - config.grip_depth  # m from the tool point to the peg's tip, along the approach
        pos, orn = self.pose_in_hand()
        self.body = sim.register(name, pb.createMultiBody(config.mass, col, vis, pos, orn, physicsClientId=cid))
        pb.changeDynamics(self.body, -1, lateralFriction=config.friction, contactStiffness=config.contact_stiffness,
                          contactDamping=config.contact_damping, physicsClientId=cid)
        for link in range(-1, pb.getNumJoints(robot.body, physicsClientId=cid)):
            pb.setCollisionFilterPair(robot.body, self.body, link, -1, 0, physicsClientId=cid)
        self.constraint = pb.createConstraint(robot.body, robot.tool_id, self.body, -1, pb.JOINT_FIXED, [0, 0, 0],
                                              [0, 0, self.offset], [0, 0, 0], physicsClientId=cid)
        pb.changeConstraint(self.constraint, maxForce=10000.0, physicsClientId=cid)
        # The grip command whose jaw opening is the peg's width (Robot._send: opening = (1 - grip) * finger_travel).
        self.grip = float(np.clip(1.0 - w / robot.model.finger_travel, -1.0, 1.0))

    def pose_in_hand(self) -> tuple[Sequence[float], Sequence[float]]:
        """The peg's pose (world) where the grasp holds it, from the tool link's pose now."""
        cid = self.sim.cid
        st = pb.getLinkState(self.robot.body, self.robot.tool_id, computeForwardKinematics=1, physicsClientId=cid)
        return pb.multiplyTransforms(st[4], st[5], [0, 0, self.offset], [0, 0, 0, 1])

    def reset(self) -> None:
        """Back into the hand (after the robot's reset moved the arm)."""
        pos, orn = self.pose_in_hand()
        cid = self.sim.cid
        pb.resetBasePositionAndOrientation(self.body, pos, orn, physicsClientId=cid)
        pb.resetBaseVelocity(self.body, [0, 0, 0], [0, 0, 0], physicsClientId=cid)

    def tip(self) -> tuple[float, float, float]:
        """Centre of the peg's tip face (m, world), from the peg body's true pose."""
        pos, orn = pb.getBasePositionAndOrientation(self.body, physicsClientId=self.sim.cid)
        m = pb.getMatrixFromQuaternion(orn)
        d = self.config.length / 2
        return (pos[0] + m[2] * d, pos[1] + m[5] * d, pos[2] + m[8] * d)  # along the peg's +z (the tool's approach)


def side_boxes(side: str, block: tuple[float, float], height: float, chamfer: float, peg_width: float):
    """(half extents, centre, quaternion) of one side's boxes, in the hole's frame (origin at the top centre of
    the opening, the hole exactly peg_width wide: each side is then moved out by half the clearance)."""
    h = peg_width / 2
    axis = 0 if side in ("px", "nx") else 1
    sign = 1.0 if side[0] == "p" else -1.0
    half_block = block[axis] / 2
    span = block[1 - axis] / 2  # the slab runs the block's full length (the corners overlap: both are solid there)
    c = chamfer
    out = []

    def slab(inner: float, z_lo: float, z_hi: float):
        half_across = (half_block - inner) / 2
        centre_across = sign * (inner + half_across)
        he = [0.0, 0.0, (z_hi - z_lo) / 2]
        ctr = [0.0, 0.0, (z_lo + z_hi) / 2]
        he[axis], he[1 - axis] = half_across, span
        ctr[axis] = centre_across
        out.append((he, ctr, (0.0, 0.0, 0.0, 1.0)))

    slab(h, -height, -c)
    if c > 0:
        slab(h + c, -c, 0.0)
        # A square bar along the side, turned 45 degrees about its length, centred at the chamfer's foot
        # corner: its upper inner face runs from (h, -c) to (h + c, 0), the chamfer.
        s = c / math.sqrt(2.0)
        he = [s, s, s]
        he[1 - axis] = span
        ctr = [0.0, 0.0, -c]
        ctr[axis] = sign * (h + c)
        turn_axis = [0.0, 0.0, 0.0]
        turn_axis[1 - axis] = 1.0
        quat = pb.getQuaternionFromAxisAngle(turn_axis, math.pi / 4)
        out.append((he, ctr, tuple(quat)))
    return out


class HoleFixture:
    """The block with the hole, four static bodies `<name>_<side>`; `place` sets the episode's pose and clearance."""

    def __init__(self, sim: Simulator, config: HoleConfig, peg_width: float):
        self.sim, self.config, self.peg_width = sim, config, peg_width
        cid = sim.cid
        self.names = [f"{config.name}_{side}" for side in SIDES]
        self.bodies = []
        for side, name in zip(SIDES, self.names):
            boxes = side_boxes(side, config.block_size, config.height, config.chamfer, peg_width)
            col = pb.createCollisionShapeArray([pb.GEOM_BOX] * len(boxes), halfExtents=[b[0] for b in boxes],
                                               collisionFramePositions=[b[1] for b in boxes],
                                               collisionFrameOrientations=[b[2] for b in boxes], physicsClientId=cid)
            vis = pb.createVisualShapeArray([pb.GEOM_BOX] * len(boxes), halfExtents=[b[0] for b in boxes],
                                            visualFramePositions=[b[1] for b in boxes],
                                            visualFrameOrientations=[b[2] for b in boxes],
                                            rgbaColors=[list(config.color)] * len(boxes), physicsClientId=cid)
            body = pb.createMultiBody(0.0, col, vis, list(config.position), physicsClientId=cid)
            pb.changeDynamics(body, -1, lateralFriction=config.friction, physicsClientId=cid)
            self.bodies.append(sim.register(name, body))
        self.place(config.position, float(np.mean(config.clearance)))

    def place(self, position: Sequence[float], clearance: float) -> None:
        """The hole's top centre at `position` (m, world), its side peg_width + clearance."""
        self.position, self.clearance = tuple(float(v) for v in position), float(clearance)
        self.half_width = (self.peg_width + clearance) / 2
        for side, body in zip(SIDES, self.bodies):
            out = [0.0, 0.0, 0.0]
            out[0 if side in ("px", "nx") else 1] = (1.0 if side[0] == "p" else -1.0) * clearance / 2
            pos = [p + o for p, o in zip(self.position, out)]
            pb.resetBasePositionAndOrientation(body, pos, (0, 0, 0, 1), physicsClientId=self.sim.cid)
