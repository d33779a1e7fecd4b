"""Peg insert: a peg held in the gripper goes into a hole whose position is known to +-position_error only.

Each episode draws the hole's true position (nominal + uniform +-position_error in x and y) and its
clearance. The observation gives the nominal hole and the peg tip relative to it (what a cell's
drawings tell), never the true hole: the policy finds it by touch through the wrist F/T sensor (robot
features wrist_force / wrist_torque). Success: the peg tip `depth` below the hole's top, inside the
hole, with the wrist force never above `force_limit` (an episode over it ends as a failure).

KPIs: insertion_time (s, episode time at insertion; successes only), peak_force (N, the largest contact
force between the peg and the fixture or table, the simulator's truth summed over contact points and
checked at every physics substep), over_force_limit (0/1), jams (how many times that force stayed above
jam_force for jam_time with under jam_progress of depth gained). The contact force, not the wrist
reading, is what the limit guards: the wrist also feels the tool's inertia when the arm accelerates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet as pb

from scenarios.schema import PegInsertTask
from sim.tasks.base import Feature, Task
from sim.tasks.collisions import CollisionCounter

CLEAR_HEIGHT = 0.02  # m of the tip over the hole's top above which the peg touches nothing
SIDE_MARGIN = 0.001  # m: a tip this far outside the hole's side (contact penetration) still counts as in it


class PegInsert(Task):
    episode_kpis = ("insertion_time", "peak_force", "over_force_limit", "jams")

    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        if cell.peg is None or cell.hole is None:
            raise ValueError("peg_insert needs the cell's peg and hole (sim/cell.py builds them)")
        self.peg, self.hole = cell.peg, cell.hole
        if self.robot.wrist is None:
            raise ValueError("peg_insert needs robot.wrist_ft")
        self.nominal = tuple(float(v) for v in self.config.hole.position)
        self._collisions = CollisionCounter(cell)
        self._jam_window = max(1, int(round(self.config.jam_time * scenario.physics.control_hz)))
        # The peg's contact points after each physics substep since the last control step, kept by a substep
        # hook (only while the peg is near the fixture) and summed up once per control step.
        self._contacts: list[tuple] = []
        get_contacts, peg, cid, keep = pb.getContactPoints, self.peg.body, self.sim.cid, self._contacts.append
        # bodyA the peg, bodyB and both links any: positional, as PyBullet's keyword parsing costs more than the query
        self._keep_contacts = lambda: keep(get_contacts(peg, -1, -2, -2, cid))
        self._watching = False  # whether _keep_contacts runs after each physics substep

    def _contact_peak(self) -> float:
        """The largest contact force on the peg (normal and friction, vector-summed over its contact points)
        over the substeps since the last control step (N)."""
        peak = 0.0
        for points in self._contacts:
            fx = fy = fz = 0.0
            for c in points:  # c[7]: normal on B towards A (the peg); c[11], c[13]: friction directions
                n, f1, d1, f2, d2 = c[9], c[10], c[11], c[12], c[13]
                fx += n * c[7][0] + f1 * d1[0] + f2 * d2[0]
                fy += n * c[7][1] + f1 * d1[1] + f2 * d2[1]
                fz += n * c[7][2] + f1 * d1[2] + f2 * d2[2]
            f = math.sqrt(fx * fx + fy * fy + fz * fz)
            if f > peak:
                peak = f
        self._contacts.clear()
        return peak

    @property
    def config(self) -> PegInsertTask:
        return self.scenario.task  # type: ignore[return-value]

    # --- episode --------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        h = self.config.hole
        err = rng.uniform(-h.position_error, h.position_error, 2)
        clearance = rng.uniform(*h.clearance)
        self.hole.place((self.nominal[0] + err[0], self.nominal[1] + err[1], self.nominal[2]), clearance)
        self.peg.reset()
        self._collisions.reset()
        self.peak_force = self.contact_force = 0.0
        self._contacts.clear()
        self.over_force = False
        self.inserted_at: float | None = None
        self.jams = 0
        self._jammed = False
        self._depths: list[float] = []  # depth at each step of the force-above-jam_force run
        self._measure()

    def after_physics(self) -> None:
        self._collisions.update(self.robot.contacts())
        self.contact_force = force = self._contact_peak()
        if force > self.peak_force:
            self.peak_force = force
        if force > self.config.force_limit:
            self.over_force = True
        self._measure()
        if self.inserted_at is None and self._inserted:
            self.inserted_at = self.sim.time
        # A jam: force above jam_force over jam_time with no depth progress (counted once per jam).
        if force > self.config.jam_force and not self._inserted:
            self._depths.append(self._depth)
            if len(self._depths) > self._jam_window:
                self._depths.pop(0)
            if len(self._depths) == self._jam_window and not self._jammed \
                    and self._depths[-1] - self._depths[0] < self.config.jam_progress:
                self.jams += 1
                self._jammed = True
        else:
            self._depths.clear()
            self._jammed = False

    def _measure(self) -> None:
        tip = self.peg.tip()
        self._tip = tip
        self._depth = self.hole.position[2] - tip[2]
        hx, hy, _ = self.hole.position
        inside = abs(tip[0] - hx) < self.hole.half_width + SIDE_MARGIN and abs(tip[1] - hy) < self.hole.half_width + SIDE_MARGIN
        self._inserted = inside and self._depth >= self.config.depth - 1e-9 and not self.over_force
        # The tip as the robot knows it: from the tool pose and the grasp (proprioception, no truth).
        tx, ty, tz = self.robot.reading.tool_pos
        self._tip_known = (tx, ty, tz - self.peg.tip_offset)
        # Well above the fixture and the table, nothing touches the peg within the next control period:
        # the substeps skip the contact query (a tool at 0.1 m/s moves 2.5 mm per period at 40 Hz).
        clear = tip[2] > self.hole.position[2] + CLEAR_HEIGHT
        if clear == self._watching:  # not called at all while clear: 12 calls per step cost ~3% of env speed
            self._watching = not clear
            if clear:
                self.sim.remove_substep_hook(self._keep_contacts)
            else:
                self.sim.add_substep_hook(1, self._keep_contacts)

    # --- observation ----------------------------------------------------------------------------
    def features(self) -> list[Feature]:
        return [("hole_nominal_position", 3, "m"), ("peg_tip_to_nominal_hole", 3, "m"), ("insertion_depth", 1, "m")]

    def observation(self) -> list[float]:
        nx, ny, nz = self.nominal
        x, y, z = self._tip_known
        return [nx, ny, nz, nx - x, ny - y, nz - z, nz - z]

    # --- reward and outcome ---------------------------------------------------------------------
    def reward(self) -> float:
        w = self.config.reward
        nx, ny, nz = self.nominal
        x, y, z = self._tip_known
        d = math.sqrt((nx - x) ** 2 + (ny - y) ** 2 + (nz - self.config.depth - z) ** 2)
        return (w.tip_to_hole * d + w.inserted * self._inserted + w.over_force * self.over_force
                + w.force * self.contact_force)

    def is_success(self) -> bool:
        return self._inserted

    def is_terminated(self) -> bool:
        return self._inserted or self.over_force

    def info(self) -> dict[str, Any]:
        info = {"is_success": self._inserted, "collisions": self._collisions.total, "peak_force": self.peak_force,
                "over_force_limit": float(self.over_force), "jams": self.jams, "depth": self._depth}
        if self.inserted_at is not None:  # absent (not NaN) until inserted, so infos compare equal across identical runs
            info["insertion_time"] = info["cycle_time"] = self.inserted_at
        return info

    # --- for the scripted expert (and tests) ----------------------------------------------------
    @property
    def tip_known(self) -> tuple[float, float, float]:
        return self._tip_known

    @property
    def true_hole(self) -> tuple[float, float, float]:
        return self.hole.position
