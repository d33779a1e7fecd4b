"""Peg-insert's expert: insertion by touch through the wrist F/T sensor, the arm in admittance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.env import FactoryEnv
from sim.experts.base import Expert
from sim.tasks.peg_insert import PegInsert


class PegInsertExpert(Expert):
    """Insertion by touch, reading only what a policy sees: the nominal hole, the peg tip and the wrist F/T.

    Stateless, so that a clone can learn it: every action is a function of the current observation
    (a phase machine's hidden phase and timers made the same observation carry different labels, and
    a clone of it hovered over the hole, 0 of 50). By the tip's place relative to the nominal hole:
    high or off to the side -> over the nominal hole at full speed, slowing down to CLEAR above it;
    below CLEAR -> straight down at a touch's speed; at the fixture's top -> the outward spiral of the
    search, a direction field of the tip's position (so a bounce does not restart it), pressing with
    SEARCH_FORCE (the peg drops into the chamfer when it passes over the hole, and the lateral
    compliance centres it); sinking from SINK to DROP below the top -> the spiral slows to a stop; then
    pressing with INSERT_FORCE, down to the declared depth. Needs robot.compliance: the target is
    pressed into the part by force / stiffness.
    """

    HOVER = 0.02  # m of the tip over the hole's top to stay at while the tool is not over the nominal hole
    CLEAR = 0.003  # m of the tip over the hole's top below which it descends at a touch's speed
    ALIGNED = 0.001  # m of the tip from the nominal hole's axis that counts as over it
    CONTACT_FORCE = 2.0  # N of push that means the peg has met the fixture (tests use it)
    SEARCH_FORCE = 4.0  # N pressed while searching
    INSERT_FORCE = 8.0  # N pressed while inserting
    DROP = 0.0008  # m of depth below the hole's top that means the tip found the hole
    SINK = 0.0004  # m of depth below the hole's top from which the spiral slows, to a stop at DROP
    PITCH = 0.0008  # m between spiral turns: less than the smallest clearance + 2 chamfers
    SEARCH_SPEED = 0.01  # m/s along the spiral
    SEARCH_RADIUS = 0.004  # m: beyond this the search heads back toward the nominal hole (up to twice as far
                           # on the fixture's top; farther off, the tip rises to CLEAR and starts over)
    PRESS_SPEED = 0.008  # m/s of the target into the part while pressing
    SLOW = 0.04  # fraction of full speed toward the fixture: a 4 mm/s touch keeps the impact well under the limit

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: PegInsert = env.task  # type: ignore[assignment]
        if self.robot.compliance is None:
            raise ValueError("the peg-insert expert presses by force / stiffness: it needs robot.compliance")
        self.dt = env.scenario.physics.control_period
        self.grip = self.task.peg.grip
        self.nominal = np.array(self.task.nominal)

    def act(self, obs: Any = None) -> np.ndarray:
        tip = np.array(self.task.tip_known) - self.nominal  # the tip relative to the nominal hole's top centre
        push = -self.robot.reading.wrench[2]  # N: the fixture pushing back against the approach direction
        off_axis = math.hypot(tip[0], tip[1])
        searchable = off_axis <= 2 * self.SEARCH_RADIUS
        # Sinking from SINK to DROP below the top, the spiral slows to a stop: no step between searching and
        # inserting for a clone to blur (pressed on the top, the tip sits 0.1-0.3 mm below it).
        sunk = float(np.clip((-tip[2] - self.SINK) / (self.DROP - self.SINK), 0.0, 1.0))
        if tip[2] < 0.0 and searchable:  # on the fixture's top, or into the hole: along the spiral, pressing
            xy = (1.0 - sunk) * self._spiral(tip[:2], off_axis) * self.SEARCH_SPEED * self.dt
            force = self.INSERT_FORCE if sunk >= 1.0 else self.SEARCH_FORCE
            move = np.array([xy[0], xy[1], self._press(push, force)])
        elif tip[2] < self.CLEAR and searchable:  # just above it (or bounced off it): down to a touch, xy held
            move = np.array([0.0, 0.0, -self.SLOW * self.step_len])
        elif off_axis > self.ALIGNED:  # over the nominal hole first, down to HOVER at most, up to CLEAR at least
            move = np.array([-tip[0], -tip[1], min(max(tip[2], self.CLEAR), self.HOVER) - tip[2]])
        else:  # over it: down, slowing from full speed to a touch's as the tip nears CLEAR
            move = np.array([-tip[0], -tip[1], -max(self.SLOW * self.step_len, min(self.step_len, 0.5 * (tip[2] - self.CLEAR)))])
        action = move / self.step_len
        action /= max(1.0, float(np.max(np.abs(action))))
        yaw = float(np.clip(-self.robot.tool_yaw / self.yaw_len, -1.0, 1.0))
        return np.concatenate([action, [yaw, self.grip]]).astype(np.float32)

    def _spiral(self, xy: np.ndarray, r: float) -> np.ndarray:
        """Unit direction of an outward Archimedean spiral (PITCH per turn) through `xy` (m from the nominal
        hole's axis); beyond SEARCH_RADIUS, back toward the axis."""
        radial = xy / r if r > 1e-9 else np.array([1.0, 0.0])
        if r > self.SEARCH_RADIUS:
            return -radial
        direction = r * np.array([-radial[1], radial[0]]) + self.PITCH / (2 * np.pi) * radial
        return direction / np.linalg.norm(direction)

    def _press(self, push: float, force: float) -> float:
        """z step of the target (m) that regulates the push toward `force` N: down at PRESS_SPEED when free,
        still at `force`, up above it. Slow enough that one control period's step into a stiff contact
        stays a few newtons: the admittance reacts once per period."""
        return -self.PRESS_SPEED * self.dt * float(np.clip((force - push) / force, -1.0, 1.0))
