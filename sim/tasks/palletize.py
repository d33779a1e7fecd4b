"""Palletize: boxes arrive on an infeed conveyor against an end stop; stack them on the pallet in the pattern.

A box's life: parked -> active (riding the belt, waiting at the stop, on the cup, falling) -> placed
(released, at rest within tolerance of its slot) | misplaced (released, at rest anywhere else off the
belt) | dropped (fallen to the floor). The i-th box of an episode belongs in slot i. Success asks for
more than every box having been placed: at the end every box must still be within tolerance and
standing, so a later box that knocks the stack over fails the episode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet as pb

from perception.observers import wrap_to_period
from scenarios.schema import PalletizeTask
from sim.props.infeed import SPAWN_MARGIN, Infeed
from sim.props.pallet import QUARTER_TURN, Slot, pallet_slots, pallet_top
from sim.props.parts import Part
from sim.tasks.base import Feature, Task
from sim.tasks.collisions import CollisionCounter

FLOOR_MARGIN = 0.03  # m: a box whose centre is this far below its lowest resting height has fallen to the floor
# Stand-in for the box-to-slot distance while no box is on its way, so the reward does not jump (m).
IDLE_SLOT_DISTANCE = 0.5

PALLETIZE_FEATURES: tuple[Feature, ...] = (
    ("box_position", 3, "m"),  # the box to handle now (the oldest not yet resolved), centre, world
    ("box_velocity", 3, "m/s"),
    ("box_top_to_tool", 3, "m"),  # the centre of its top face minus the tool point: where the cup goes
    ("box_yaw_to_tool", 1, "rad"),  # its yaw minus the tool's, modulo the box's symmetry
    ("box_held", 1, "bool"),  # sealed on the cup
    ("box_present", 1, "bool"),  # 0: no box to handle (the rest of these features are 0)
    ("slot_position", 3, "m"),  # where its centre belongs
    ("slot_to_box", 3, "m"),  # slot minus box centre
    ("slot_yaw_to_box", 1, "rad"),  # slot yaw minus box yaw, modulo the box's symmetry
)


class Palletize(Task):
    # The commanded tool target minus the measured tool follows the features: it shows a box pressed on the
    # stack (the target sunk below the tool), which the expert's moves, relative to the target, undo.
    observes_command = True
    episode_kpis = ("boxes_per_minute", "placement_error_mm", "max_placement_error_mm", "drops", "boxes_placed")

    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        if cell.conveyor is None or cell.parts is None or self.robot.suction is None:
            raise ValueError("palletize needs a conveyor, parts (the boxes) and a robot with a suction tool")
        self.conveyor, self.parts, self.cup = cell.conveyor, cell.parts, self.robot.suction
        self.infeed = Infeed(cell.conveyor, cell.parts, scenario.randomization)
        fixtures = {f.name: f for f in scenario.fixtures}
        self.pallet = fixtures[self.config.pallet]
        self.slots: list[Slot] = pallet_slots(self.config.pattern, scenario.parts.size, self.pallet)
        self.box_size = tuple(scenario.parts.size)
        self.yaw_period = QUARTER_TURN if self.box_size[0] == self.box_size[1] else math.pi
        # Lowest resting centre height: a box lying flat on the floor is below every support surface.
        self._floor_z = min(pallet_top(self.pallet), self.conveyor.top_z) + min(self.box_size) / 2 - FLOOR_MARGIN
        self._bodies = {p.body: p for p in self.parts.parts}
        self._collisions = CollisionCounter(cell, {self.conveyor.body: -1})

    @property
    def config(self) -> PalletizeTask:
        return self.scenario.task  # type: ignore[return-value]

    # --- episode ------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        self.infeed.reset(rng)
        self._belt = self.infeed.belt
        self._collisions.reset()
        self._was_held: set[int] = set()  # boxes that have been on the cup: only those can be placed
        self._drops = 0
        self._events = {"placed": 0, "misplaced": 0, "dropped": 0, "collisions": 0}
        self._first_spawn: float | None = None
        self._poses: dict[int, tuple] = {}
        self._update_current()

    def before_physics(self, rng: np.random.Generator) -> None:
        self.conveyor.update()
        # A backed-up infeed (a box still where the next is set down) keeps the next box waiting upstream.
        if self.infeed.spawn_due(self.sim.time, self._spawn_zone_taken) and self._first_spawn is None:
            self._first_spawn = self.sim.time

    def _spawn_zone_taken(self) -> bool:
        """A box still within a box length (and a margin) of the spawn point: a new one would land on it."""
        c, along = self.conveyor, self.infeed.spawn_along
        for part in self.parts.parts:
            if part.state == "active":
                pos = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)[0]
                if abs(float((np.asarray(pos) - c.center) @ c.direction) - along) < max(self.box_size[:2]) + SPAWN_MARGIN:
                    return True
        return False

    def after_physics(self) -> None:
        contacts = self.robot.contacts()
        losses = self.cup.losses - self._drops
        self._drops = self.cup.losses
        self._events = {"placed": 0, "misplaced": 0, "dropped": losses, "collisions": self._collisions.update(contacts)}
        held = self.cup.held
        if held is not None:
            self._was_held.add(held)
        now = self.sim.time
        self._poses = {}
        for i, part in enumerate(self.parts.parts):
            if part.state != "active":
                continue
            pos, orn, vel = self._poses[part.body] = self._read_pose(part)
            if pos[2] < self._floor_z:
                part.state, part.resolved_time = "dropped", now
                self._events["dropped"] += 1
                continue
            speed = math.sqrt(vel[0] ** 2 + vel[1] ** 2 + vel[2] ** 2)
            if part.body == held or part.body not in self._was_held or speed >= self.config.settle_speed:
                part.settle_since = None
                continue
            part.settle_since = now if part.settle_since is None else part.settle_since
            if now - part.settle_since < self.config.settle_time - 1e-9:
                continue
            if self._on_belt(pos):  # put back on the infeed: still to be handled
                continue
            ok = self.in_tolerance(i, pos, orn)
            part.state, part.resolved_time = ("placed" if ok else "misplaced"), part.settle_since
            self._events["placed" if ok else "misplaced"] += 1
        self._update_current()

    def _on_belt(self, pos) -> bool:
        c = self.conveyor
        rel = np.asarray(pos) - c.center
        return (abs(float(rel @ c.direction)) <= c.config.length / 2 and abs(float(rel @ c.lateral)) <= c.config.width / 2
                and pos[2] < c.top_z + self.box_size[2])

    def _released(self, part: Part) -> bool:
        """Let go of off the belt and not yet resolved: settling where it was put, nothing more to do to it."""
        if part.body not in self._was_held or part.body == self.cup.held:
            return False
        pose = self._poses.get(part.body) or self._read_pose(part)
        return not self._on_belt(pose[0])

    def _update_current(self) -> None:
        # The box to handle now: the oldest on its way (a released box settling needs nothing more).
        self.current: Part | None = next((p for p in self.parts.parts if p.state == "active" and not self._released(p)), None)
        reading = self.robot.reading
        self._tool, self._tool_yaw = reading.tool_pos, reading.tool_yaw
        if self.current is not None:
            body = self.current.body
            if body not in self._poses:
                self._poses[body] = self._read_pose(self.current)
            pos, orn, vel = self._poses[body]
            self._box_pos, self._box_yaw, self._box_vel = pos, _yaw(orn), vel
            self._box_held = self.cup.held == body
            self._slot = self.slots[self.current.index]

    def _read_pose(self, part: Part) -> tuple:
        pos, orn = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)
        return pos, orn, pb.getBaseVelocity(part.body, physicsClientId=self.sim.cid)[0]

    # --- tolerance ------------------------------------------------------------------------------
    def errors(self, i: int, pos=None, orn=None) -> tuple[float, float, float]:
        """Box i against slot i: centre distance (m), yaw error (rad, modulo symmetry), tilt (rad)."""
        if pos is None:
            pos, orn = pb.getBasePositionAndOrientation(self.parts.parts[i].body, physicsClientId=self.sim.cid)
        slot = self.slots[i]
        x, y, _, _ = orn
        tilt = math.acos(min(1.0, abs(1 - 2 * (x * x + y * y))))  # the box's z axis from the vertical
        yaw_err = abs(wrap_to_period(_yaw(orn) - slot.yaw, self.yaw_period))
        return math.dist(pos, slot.position), yaw_err, tilt

    def in_tolerance(self, i: int, pos=None, orn=None) -> bool:
        d, yaw_err, tilt = self.errors(i, pos, orn)
        c = self.config
        return d <= c.position_tolerance and yaw_err <= c.yaw_tolerance and tilt <= c.tilt_tolerance

    # --- observation ----------------------------------------------------------------------------
    def features(self) -> list[Feature]:
        return list(PALLETIZE_FEATURES)

    def observation(self) -> list[float]:
        if self.current is None:
            return [0.0] * 19
        px, py, pz = self._box_pos
        tx, ty, tz = self._tool
        (sx, sy, sz), slot_yaw = self._slot.position, self._slot.yaw
        top = pz + self.box_size[2] / 2
        return [
            px, py, pz, *self._box_vel, px - tx, py - ty, top - tz,
            wrap_to_period(self._box_yaw - self._tool_yaw, self.yaw_period), float(self._box_held), 1.0,
            sx, sy, sz, sx - px, sy - py, sz - pz, wrap_to_period(slot_yaw - self._box_yaw, self.yaw_period),
        ]

    # --- reward and outcome ---------------------------------------------------------------------
    def reward(self) -> float:
        w, e = self.config.reward, self._events
        r = w.placed * e["placed"] + w.misplaced * e["misplaced"] + w.dropped * e["dropped"] + w.collision * e["collisions"]
        if self.current is None:
            return r + w.box_to_slot * IDLE_SLOT_DISTANCE
        held = self._box_held
        top = (self._box_pos[0], self._box_pos[1], self._box_pos[2] + self.box_size[2] / 2)
        d_tool = math.dist(top, self._tool)
        d_slot = math.dist(self._box_pos, self._slot.position)
        return r + w.tool_to_box * d_tool * (not held) + w.box_to_slot * d_slot + w.held * held

    def is_success(self) -> bool:
        return all(p.state == "placed" for p in self.parts.parts) and all(
            self.in_tolerance(i) for i in range(len(self.parts.parts)))

    def is_terminated(self) -> bool:
        return all(p.state in ("placed", "misplaced", "dropped") for p in self.parts.parts)

    def info(self) -> dict[str, Any]:
        parts = self.parts.parts
        placed = [p for p in parts if p.state == "placed"]
        info: dict[str, Any] = {
            "is_success": self.is_success(),
            "collisions": self._collisions.total,
            "boxes_placed": len(placed),
            "boxes_misplaced": sum(p.state == "misplaced" for p in parts),
            "boxes_fallen": sum(p.state == "dropped" for p in parts),
            "drops": self.cup.losses,  # boxes lost from the cup with the vacuum on
        }
        released = [p for p in parts if p.state in ("placed", "misplaced")]
        if released:  # absent (not NaN) until a box is released, so infos compare equal across identical runs
            errors = [self.errors(p.index) for p in released]
            info["placement_error_mm"] = 1000.0 * float(np.mean([d for d, _, _ in errors]))
            info["max_placement_error_mm"] = 1000.0 * max(d for d, _, _ in errors)
            info["max_yaw_error_deg"] = math.degrees(max(y for _, y, _ in errors))
            info["max_tilt_deg"] = math.degrees(max(t for _, _, t in errors))
        if placed:
            info["cycle_time"] = float(np.mean([p.resolved_time - p.spawn_time for p in placed]))
            span = max(p.resolved_time for p in placed) - (self._first_spawn or 0.0)
            info["boxes_per_minute"] = 60.0 * len(placed) / span if span > 0 else 0.0
        return info

    # --- for the scripted expert ----------------------------------------------------------------
    def box_state(self) -> dict[str, Any] | None:
        """The box to handle now and its slot, from the simulator (None: none on its way)."""
        if self.current is None:
            return None
        return {
            "index": self.current.index, "position": np.array(self._box_pos), "velocity": np.array(self._box_vel),
            "yaw": self._box_yaw, "held": self._box_held, "slot": self._slot,
            "on_belt": self._on_belt(self._box_pos) and not self._box_held,
        }


def _yaw(quat) -> float:
    x, y, z, w = quat
    return math.atan2(2 * (x * y + z * w), 1 - 2 * (y * y + z * z))
