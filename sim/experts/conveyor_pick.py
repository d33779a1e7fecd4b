"""Conveyor-pick's expert: a state machine that intercepts the moving part and drops it in the bin."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.localize import wrap_angle
from sim.env import FactoryEnv
from sim.experts.base import Expert
from sim.tasks.conveyor_pick import QUARTER_TURN, ConveyorPick


class ConveyorPickExpert(Expert):
    """approach -> descend -> close -> lift -> carry -> release -> retreat, intercepting the moving part."""

    HOVER = 0.10  # m above the part centre while lining up
    GRASP_DEPTH = 0.005  # m the tool point goes below the part centre
    CARRY_Z = 0.28  # m, safe height over the bin walls and the belt
    CLOSE_TIME = 0.25  # s of gripping before lifting
    RELEASE_TIME = 0.3  # s of open gripper before leaving the bin

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: ConveyorPick = env.task  # type: ignore[assignment]
        self.dt = env.scenario.physics.control_period

    def reset(self) -> None:
        self.phase, self.timer = "approach", 0.0

    def _set(self, phase: str) -> None:
        self.phase, self.timer = phase, 0.0

    def act(self, obs: Any = None) -> np.ndarray:
        self.timer += self.dt
        part = self.task.part_state()
        belt = self.task.conveyor.belt_velocity()
        ff = belt * self.dt
        tool = self.robot.tool_pose()[0]
        if part is None:  # nothing on the belt: wait above the pick zone, gripper open
            if self.phase not in ("approach",):
                self._set("approach")
            wait = self.task.conveyor.point(-0.15, 0.0, self.HOVER + 0.05)
            return self._toward(wait, 0.0, -1.0)
        pos = part["position"]
        yaw_err = wrap_angle(part["yaw"] - self.robot.target_yaw, QUARTER_TURN)
        lead = pos + belt * 0.1  # where the part will be when the arm gets there
        if self.phase == "approach":
            target = lead + np.array([0, 0, self.HOVER])
            if np.linalg.norm((tool - target)[:2]) < 0.01 and abs(yaw_err) < 0.05 and abs(tool[2] - target[2]) < 0.03:
                self._set("descend")
            return self._toward(target, yaw_err, -1.0, ff)
        if self.phase == "descend":
            target = pos + np.array([0, 0, -self.GRASP_DEPTH])
            if tool[2] - target[2] < 0.006:
                self._set("close")
            if np.linalg.norm((tool - pos)[:2]) > 0.02:
                self._set("approach")
            return self._toward(target, yaw_err, -1.0, ff, speed=0.5)
        if self.phase == "close":
            if self.timer >= self.CLOSE_TIME:
                self._set("lift")
            return self._toward(pos + np.array([0, 0, -self.GRASP_DEPTH]), 0.0, 1.0, ff)
        if self.phase == "lift":
            target = np.array([tool[0], tool[1], self.CARRY_Z])
            if not part["held"] and self.timer > 0.3:
                self._set("approach")
            elif tool[2] > self.CARRY_Z - 0.05:
                self._set("carry")
            return self._toward(target, 0.0, 1.0)
        drop = self.task.bin.drop_point
        if self.phase == "carry":
            over = np.array([drop[0], drop[1], max(self.CARRY_Z, drop[2])])
            if not part["held"]:
                self._set("approach")
            elif np.linalg.norm((tool - over)[:2]) < 0.02:
                self._set("lower")
            return self._toward(over, 0.0, 1.0)
        if self.phase == "lower":
            if tool[2] < drop[2] + 0.01:
                self._set("release")
            return self._toward(drop, 0.0, 1.0)
        if self.phase == "release":
            if self.timer >= self.RELEASE_TIME:
                self._set("retreat")
            return self._toward(drop, 0.0, -1.0)
        # retreat: back up over the bin; a new part will move the machine back to approach
        if not part["in_bin"] and not part["held"] and self.timer > 1.0:
            self._set("approach")
        return self._toward(np.array([drop[0], drop[1], self.CARRY_Z]), 0.0, -1.0)
