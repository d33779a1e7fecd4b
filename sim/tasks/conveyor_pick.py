"""Conveyor pick: parts arrive on a moving belt; pick each and place it in the target bin."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet as pb

from perception.localize import Detection, PartClass, wrap_angle
from perception.observers import CONVEYOR_PICK_FEATURES, ConveyorPickObserver, yaw_period
from scenarios.schema import ConveyorPickTask
from sim.props.infeed import Infeed
from sim.props.parts import Part
from sim.tasks.base import Feature, PartTruth, Task, robot_state
from sim.tasks.collisions import CollisionCounter

# Constant stand-in for the part-to-bin distance while no part is on the belt, so the reward does
# not jump when a part arrives (m; about the largest part-to-bin distance in the shipped cells).
IDLE_BIN_DISTANCE = 1.0
PART_CLASS = "part"  # conveyor-pick's one kind of part, as the camera names it
QUARTER_TURN = math.pi / 2  # rad: a square part looks the same every quarter turn


class ConveyorPick(Task):
    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        if cell.conveyor is None or cell.parts is None:
            raise ValueError("conveyor_pick needs a conveyor and parts")
        self.conveyor, self.parts = cell.conveyor, cell.parts
        self.infeed = Infeed(cell.conveyor, cell.parts, scenario.randomization)
        self.bin = cell.bins[self.config.bin]
        self._drop_point = tuple(self.bin.drop_point.tolist())
        self._finger_links = frozenset(self.robot.finger_ids)
        self._part_bodies = {self.sim.body(p.name): p for p in self.parts.parts}
        # The belt (conveyor link 0) is where parts are picked; only the conveyor's frame (link -1) is a fixture.
        self._collisions = CollisionCounter(cell, {self.conveyor.body: -1})

    @property
    def config(self) -> ConveyorPickTask:
        return self.scenario.task  # type: ignore[return-value]

    # --- episode ------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        self.infeed.reset(rng)
        self._belt = self.infeed.belt
        self._collisions.reset()
        self._holding: set[str] = set()
        self._events = {"placed": 0, "dropped": 0, "collisions": 0}
        self._poses = {}
        self._update_current()

    def before_physics(self, rng: np.random.Generator) -> None:
        self.conveyor.update()
        self.infeed.spawn_due(self.sim.time)

    def after_physics(self) -> None:
        # One query for every contact of the robot serves both grasp detection and collision counting.
        contacts = self.robot.contacts()
        self._read_grasp(contacts)
        self._events = {"placed": 0, "dropped": 0, "collisions": self._collisions.update(contacts)}
        now = self.sim.time
        self._poses: dict[str, tuple] = {}
        for part in self.parts.parts:
            if part.state != "active":
                continue
            pos, orn, vel = self._poses[part.name] = self._read_pose(part)
            speed = math.sqrt(vel[0] ** 2 + vel[1] ** 2 + vel[2] ** 2)
            if self.bin.contains(pos) and speed < self.config.settle_speed and not self._held(part):
                part.settle_since = now if part.settle_since is None else part.settle_since
                if now - part.settle_since >= self.config.settle_time - 1e-9:
                    part.state, part.resolved_time = "placed", part.settle_since
                    self._events["placed"] += 1
            else:
                part.settle_since = None
                if pos[2] < self.conveyor.top_z - 0.03 and not self.bin.contains(pos):
                    part.state, part.resolved_time = "dropped", now
                    self._events["dropped"] += 1
        self._update_current()

    def _update_current(self) -> None:
        self.current: Part | None = self.parts.current()
        reading = self.robot.reading
        self._tool, self._tool_yaw = reading.tool_pos, reading.tool_yaw
        if self.current is not None:
            name = self.current.name
            if name not in self._poses:
                self._poses[name] = self._read_pose(self.current)
            pos, orn, vel = self._poses[name]
            self._part_pos, self._part_yaw, self._part_vel = pos, _yaw(orn), vel
            self._part_held = self._held(self.current)
            self._part_in_bin = self.bin.contains(pos)

    def _read_pose(self, part: Part) -> tuple:
        """(position, orientation, linear velocity) of a part, from Bullet."""
        pos, orn = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)
        return pos, orn, pb.getBaseVelocity(part.body, physicsClientId=self.sim.cid)[0]

    def _read_grasp(self, contacts) -> None:
        """A part is held when every finger touches it."""
        fingers_on: dict[int, set[int]] = {}
        for c in contacts:
            if c[2] in self._part_bodies and c[3] in self._finger_links:
                fingers_on.setdefault(c[2], set()).add(c[3])
        self._holding = {self._part_bodies[b].name for b, links in fingers_on.items() if links == self._finger_links}

    def _held(self, part: Part) -> bool:
        return part.name in self._holding

    # --- observation ----------------------------------------------------------------------------
    def features(self) -> list[Feature]:
        return list(CONVEYOR_PICK_FEATURES)

    def observation(self) -> list[float]:
        tx, ty, tz = self._tool
        dx, dy, dz = self._drop_point
        drop = [dx - tx, dy - ty, dz - tz]
        if self.current is None:
            return [0.0] * 12 + drop + self._belt
        px, py, pz = self._part_pos
        rel_yaw = wrap_angle(self._part_yaw - self._tool_yaw, QUARTER_TURN)
        return [
            px, py, pz, *self._part_vel, px - tx, py - ty, pz - tz, rel_yaw,
            float(self._part_held), 1.0, *drop, *self._belt,
        ]

    # --- reward and outcome ---------------------------------------------------------------------
    def reward(self) -> float:
        w = self.config.reward
        r = w.placed * self._events["placed"] + w.dropped * self._events["dropped"] + w.collision * self._events["collisions"]
        if self.current is None:
            return r + w.part_to_bin * IDLE_BIN_DISTANCE
        in_bin, held = self._part_in_bin, self._part_held
        d_tool_part = math.dist(self._part_pos, self._tool)
        d_part_bin = 0.0 if in_bin else math.dist(self._part_pos, self._drop_point)
        return r + w.tool_to_part * d_tool_part * (not held and not in_bin) + w.part_to_bin * d_part_bin + w.grasped * (held or in_bin)

    def is_success(self) -> bool:
        return all(p.state == "placed" for p in self.parts.parts)

    def is_terminated(self) -> bool:
        return self.parts.all_resolved()

    def info(self) -> dict[str, Any]:
        cycles = [p.resolved_time - p.spawn_time for p in self.parts.parts if p.state == "placed"]
        info = {
            "is_success": self.is_success(),
            "collisions": self._collisions.total,
            "parts_placed": sum(p.state == "placed" for p in self.parts.parts),
            "parts_dropped": sum(p.state == "dropped" for p in self.parts.parts),
        }
        if cycles:  # absent (not NaN) until a part is placed, so infos compare equal across identical runs
            info["cycle_time"] = float(np.mean(cycles))
        return info

    # --- what cameras see -----------------------------------------------------------------------
    def perception_classes(self) -> list[PartClass]:
        """A mesh part is known by its bounding box here (the viewer's overlay); obs_mode "perceived" refuses it (sim/env.py)."""
        pc = self.parts.config
        return [PartClass(PART_CLASS, tuple(pc.color[:3]), "box", tuple(pc.size))]

    def support_z(self) -> float:
        return float(self.conveyor.top_z)

    def part_truth(self) -> list[PartTruth]:
        truth = []
        pc = self.parts.config
        for part in self.parts.parts:
            if part.state == "parked":
                continue
            pos, orn = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)
            truth.append({"name": part.name, "type": PART_CLASS, "shape": "box", "size": tuple(pc.size),
                          "color": tuple(pc.color), "position": np.array(pos), "yaw": _yaw(orn),
                          "yaw_period": yaw_period(self.perception_classes()[0]), "state": part.state})
        return truth

    def make_observer(self) -> ConveyorPickObserver:
        c = self.conveyor.config
        direction = (math.cos(c.yaw), math.sin(c.yaw), 0.0)
        return ConveyorPickObserver(self.perception_classes()[0], self.support_z(), direction, self.bin.inside(),
                                    settle_s=self.config.settle_time)

    def perceive(self, detections: list[Detection] | None) -> list[float]:
        return self.observer.observe(detections, robot_state(self.robot), self._belt, self.sim.time)

    # --- for the scripted expert ----------------------------------------------------------------
    def part_state(self) -> dict[str, Any] | None:
        """The current part as the expert sees it: the truth, or in obs_mode "perceived" the observer's estimate."""
        if self.observer is not None:
            return self.observer.part_state()
        if self.current is None:
            return None
        return {
            "position": np.array(self._part_pos), "velocity": np.array(self._part_vel), "yaw": self._part_yaw,
            "held": self._part_held, "in_bin": self._part_in_bin,
        }


def _yaw(quat) -> float:
    x, y, z, w = quat
    return math.atan2(2 * (x * y + z * w), 1 - 2 * (y * y + z * z))
