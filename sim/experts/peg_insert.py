"""Peg-insert's expert: insertion by touch through the wrist F/T sensor, the arm in admittance."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.env import FactoryEnv
from sim.experts.base import Expert
from sim.tasks.peg_insert import PegInsert


class PegInsertExpert(Expert):
    """Insertion by touch, reading only what a policy sees: the nominal hole, the tool pose and the wrist F/T.

    approach over the nominal hole -> descend compliantly until the wrist feels the fixture -> if the
    tip is not in the hole, a spiral search around the nominal position, pressing lightly (the peg drops
    into the chamfer when it passes over the hole, and the lateral compliance centres it) -> insert,
    pressing with at most INSERT_FORCE, down to the declared depth. A stall with force (a jam) backs off
    and retries. Needs robot.compliance: the target is pressed into the part by force / stiffness.
    """

    HOVER = 0.02  # m of the tip over the hole's top after the fast approach
    CLEAR = 0.003  # m of the tip over the hole's top before descending
    CONTACT_FORCE = 2.0  # N of push that means the peg has met the fixture
    SEARCH_FORCE = 4.0  # N pressed while searching
    INSERT_FORCE = 8.0  # N pressed while inserting
    DROP = 0.0008  # m of depth below the contact height that means the tip found the hole
    PITCH = 0.0008  # m between spiral turns: less than the smallest clearance + 2 chamfers
    SEARCH_SPEED = 0.01  # m/s along the spiral
    SEARCH_RADIUS = 0.004  # m: the spiral restarts beyond this
    STALL_TIME = 1.0  # s without depth progress while pushing: back off and retry
    PRESS_SPEED = 0.008  # m/s of the target into the part while pressing
    SLOW = 0.04  # fraction of full speed toward the fixture: a 4 mm/s touch keeps the impact well under the limit

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: PegInsert = env.task  # type: ignore[assignment]
        if self.robot.compliance is None:
            raise ValueError("the peg-insert expert presses by force / stiffness: it needs robot.compliance")
        self.dt = env.scenario.physics.control_period
        self.kz = self.robot.config.compliance.stiffness[2]
        self.grip = self.task.peg.grip

    def reset(self) -> None:
        self.phase, self.timer, self.theta = "approach", 0.0, 0.0
        self.contact_depth = None
        self.best_depth, self.best_at = -1.0, 0.0

    def _set(self, phase: str) -> None:
        self.phase, self.timer = phase, 0.0

    def act(self, obs: Any = None) -> np.ndarray:
        self.timer += self.dt
        task, robot = self.task, self.robot
        nx, ny, nz = task.nominal
        tool = np.array(robot.reading.tool_pos)
        tip_z = tool[2] - task.peg.tip_offset
        depth = nz - tip_z
        push = -robot.reading.wrench[2]  # N: the fixture pushing back against the approach direction
        above = nz + task.peg.tip_offset  # tool height with the tip at the hole's top
        yaw = -robot.target_yaw
        if self.phase == "approach":  # at full speed to well above the hole: the arm sways as it stops
            goal = np.array([nx, ny, above + self.HOVER])
            if np.max(np.abs(tool - goal)) < 0.001:
                self._set("lower")
            return self._toward(goal, yaw, self.grip)
        if self.phase == "lower":
            goal = np.array([nx, ny, above + self.CLEAR])
            if np.max(np.abs(tool - goal)) < 0.0005:
                self._set("descend")
            return self._toward(goal, yaw, self.grip, speed=0.2)
        if self.phase == "descend":
            if push > self.CONTACT_FORCE or depth > self.DROP:
                self.contact_depth = depth
                self._set("insert" if depth > self.DROP else "search")
            return self._toward(np.array([nx, ny, tool[2] - 0.004]), yaw, self.grip, speed=self.SLOW)
        if self.phase == "search":
            if depth > self.contact_depth + self.DROP:
                self._set("insert")
            else:
                r = self.PITCH * self.theta / (2 * np.pi)
                self.theta += self.SEARCH_SPEED * self.dt / max(r, self.PITCH)
                if r > self.SEARCH_RADIUS:
                    self.theta = 0.0
                target = robot.target_pos
                goal = np.array([nx + r * np.cos(self.theta), ny + r * np.sin(self.theta), target[2] + self._press(push, self.SEARCH_FORCE)])
                return self._toward(goal, yaw, self.grip)
        if self.phase == "insert":
            if depth > self.best_depth + 0.0005:
                self.best_depth, self.best_at = depth, self.timer
            if self.timer - self.best_at > self.STALL_TIME:  # jammed: back off and retry
                self._set("back_off")
            target = robot.target_pos
            return self._toward(target + np.array([0.0, 0.0, self._press(push, self.INSERT_FORCE)]), yaw, self.grip)
        # back_off: up a little, then insert again
        if self.timer > 0.3:
            self.best_depth, self.best_at = depth, 0.0
            self._set("insert")
        return self._toward(robot.target_pos + np.array([0.0, 0.0, 0.002]), yaw, self.grip, speed=self.SLOW)

    def _press(self, push: float, force: float) -> float:
        """z step of the target (m) that regulates the push toward `force` N: down at PRESS_SPEED when free,
        still at `force`, up above it. Slow enough that one control period's step into a stiff contact
        stays a few newtons: the admittance reacts once per period."""
        return -self.PRESS_SPEED * self.dt * float(np.clip((force - push) / force, -1.0, 1.0))
