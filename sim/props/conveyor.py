"""A conveyor whose belt really moves: parts ride on it through friction, never teleported.

The belt is a thin link on a prismatic joint, driven at the belt speed by a velocity motor. To keep
it under the frame forever it is shifted back by `SHIFT` (m) whenever it has travelled that far;
only the belt link jumps, the parts on it keep their pose and velocity.
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb

from scenarios.schema import ConveyorConfig
from sim.simulator import Simulator, yaw_quat

SHIFT = 0.05  # m of belt travel between shifts; the belt overhangs each end by at most this
BELT_THICKNESS = 0.01  # m
FRAME_HEIGHT_MIN = 0.02  # m


class Conveyor:
    def __init__(self, sim: Simulator, config: ConveyorConfig):
        self.sim, self.config = sim, config
        self.speed = config.belt_speed
        cx, cy, top = config.position
        self.top_z = top
        self.direction = np.array([math.cos(config.yaw), math.sin(config.yaw), 0.0])
        self.lateral = np.array([-math.sin(config.yaw), math.cos(config.yaw), 0.0])
        self.center = np.array([cx, cy, top])
        frame_h = max(top - BELT_THICKNESS, FRAME_HEIGHT_MIN)
        cid = sim.cid
        frame_half = [config.length / 2, config.width / 2 + 0.02, frame_h / 2]
        frame_col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=frame_half, physicsClientId=cid)
        frame_vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=frame_half, rgbaColor=[0.55, 0.57, 0.6, 1], physicsClientId=cid)
        belt_len = config.length + SHIFT
        belt_half = [belt_len / 2, config.width / 2, BELT_THICKNESS / 2]
        belt_col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=belt_half, physicsClientId=cid)
        belt_vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=belt_half, rgbaColor=list(config.color), physicsClientId=cid)
        frame_center_z = top - BELT_THICKNESS - frame_h / 2
        body = pb.createMultiBody(
            baseMass=0.0, baseCollisionShapeIndex=frame_col, baseVisualShapeIndex=frame_vis,
            basePosition=[cx, cy, frame_center_z], baseOrientation=yaw_quat(config.yaw),
            linkMasses=[2.0], linkCollisionShapeIndices=[belt_col], linkVisualShapeIndices=[belt_vis],
            # At joint position q in [0, SHIFT] the belt spans [-L/2 - SHIFT + q, L/2 + q]: always covering the frame.
            linkPositions=[[-SHIFT / 2, 0, frame_h / 2 + BELT_THICKNESS / 2]], linkOrientations=[[0, 0, 0, 1]],
            linkInertialFramePositions=[[0, 0, 0]], linkInertialFrameOrientations=[[0, 0, 0, 1]],
            linkParentIndices=[0], linkJointTypes=[pb.JOINT_PRISMATIC], linkJointAxis=[[1, 0, 0]],
            physicsClientId=cid,
        )
        self.body = sim.register(config.name, body)
        pb.changeDynamics(body, 0, lateralFriction=config.friction, linearDamping=0, jointDamping=0, physicsClientId=cid)
        pb.changeDynamics(body, -1, lateralFriction=0.5, physicsClientId=cid)
        self._shifted_at = 0.0  # sim time of the last shift (or reset)

    def reset(self, speed: float) -> None:
        self.speed = speed
        pb.resetJointState(self.body, 0, 0.0, speed, physicsClientId=self.sim.cid)
        self._drive()
        self._shifted_at = self.sim.time

    def _drive(self) -> None:
        pb.setJointMotorControl2(
            self.body, 0, pb.VELOCITY_CONTROL, targetVelocity=self.speed, force=2000.0, physicsClientId=self.sim.cid
        )

    def update(self) -> None:
        """Call once per control step: shift the belt back once it has run SHIFT metres.

        The belt is only read once it should be near that point at its set speed (its motor holds
        the speed; parts only load it), which spares a Bullet call on most steps.
        """
        if (self.sim.time - self._shifted_at) * abs(self.speed) < 0.8 * SHIFT:
            return
        q = pb.getJointState(self.body, 0, physicsClientId=self.sim.cid)[0]
        if q >= SHIFT:
            pb.resetJointState(self.body, 0, q - SHIFT, self.speed, physicsClientId=self.sim.cid)
            self._shifted_at = self.sim.time

    def belt_velocity(self) -> np.ndarray:
        return self.direction * self.speed

    def point(self, along: float, across: float, height: float = 0.0) -> np.ndarray:
        """World point at `along` metres from the belt centre in the direction of travel."""
        return self.center + self.direction * along + self.lateral * across + np.array([0, 0, height])
