"""Iterative IK on a kinematic copy of the arm, seeded with the last joint command.

The fallback for arm models without a closed form (sim/robots/tool_down_ik.py covers both shipped
arms; tests/test_robot_gp7.py runs the Panda through this path too). PyBullet's IK starts from the
body's current joint state; on the simulated arm that is the measured state, which lags and sags
behind the command, so each control step would re-solve from afar. The copy lives in a private
Bullet client that is never stepped and is set to the previous command before each solve, which
is already near the new target (targets move a few cm per control step). One low-damped iteration
then gets most of the way, and because each step starts where the last ended, a held target
converges further every step, like one long solve spread over time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pybullet as pb

# Iterations per control step from the last command: the tracking and grasping tests hold with 1.
IK_ITERATIONS = 1
# Damping of PyBullet's damped-least-squares step. Its default (0.1) makes every iteration creep
# ~10% of the way; at 1e-3 an iteration gets most of the way and stays stable, because the command
# it seeds from is already near the answer.
JOINT_DAMPING = 1e-3


class KinematicCopy:
    """A collision-free, never-stepped copy of one robot, for IK and forward kinematics."""

    def __init__(self, urdf_path: Path, base_position: Sequence[float], base_orientation: Sequence[float],
                 movable: Sequence[int], tool_link: int) -> None:
        self.cid = pb.connect(pb.DIRECT)
        if self.cid < 0:
            raise RuntimeError("could not open a PyBullet client for IK")
        self.body = pb.loadURDF(str(urdf_path), list(base_position), list(base_orientation), useFixedBase=True,
                                physicsClientId=self.cid)
        self._movable = list(movable)
        self._tool = tool_link
        self._damping = [JOINT_DAMPING] * len(self._movable)

    def solve(self, seed: Sequence[float], position: Sequence[float], orientation: Sequence[float]) -> tuple[float, ...]:
        """Joint positions of every movable joint (joint-index order) placing the tool at the pose."""
        pb.resetJointStatesMultiDof(self.body, self._movable, [[q] for q in seed], physicsClientId=self.cid)
        return pb.calculateInverseKinematics(
            self.body, self._tool, position, orientation, jointDamping=self._damping, maxNumIterations=IK_ITERATIONS,
            residualThreshold=1e-6, physicsClientId=self.cid,
        )

    def tool_pose(self, joints: Sequence[int], q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics on the copy: (position m, rotation matrix) of the tool link with `joints` at q."""
        pb.resetJointStatesMultiDof(self.body, list(joints), [[float(a)] for a in q], physicsClientId=self.cid)
        state = pb.getLinkState(self.body, self._tool, computeForwardKinematics=1, physicsClientId=self.cid)
        return np.array(state[4]), np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3)

    def close(self) -> None:
        if self.cid >= 0:
            try:
                pb.disconnect(physicsClientId=self.cid)
            except pb.error:
                pass
            self.cid = -1

    def __del__(self) -> None:
        self.close()
