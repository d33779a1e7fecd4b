"""Bin sort: typed parts lie in an infeed tote; pick each and drop it in the bin of its class.

The robot works on one target part at a time: when it needs one, the unresolved part nearest the tool
(the rule perception's BinSortObserver follows, so a policy that sees the tote can tell which part it is),
until the part is resolved or let go over a bin. A part let go over a bin is done with: it falls and
resolves on its own, and the next target is shown at once (a policy waiting for the fall to settle would
need a clock that no image shows).
Each part ends `sorted` (resting in its own bin), `wrong` (resting in another bin) or `dropped`
(resting outside the tote and every bin); a wrong or dropped part fails the episode's success but
the episode goes on with the next part. The target features are what a camera and a perception
pipeline can also produce: where the part is, how it is turned, what class it is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet as pb

from perception.localize import Detection, PartClass
from perception.observers import BinSortObserver, SortBin, bin_sort_features, wrap_to_period, yaw_period
from scenarios.schema import BinSortTask, PartTypeConfig
from sim.props.parts import Part
from sim.tasks.base import Feature, PartTruth, Task, robot_state
from sim.tasks.collisions import CollisionCounter

PLACE_GAP = 0.001  # m between a laid part and the tote floor, so it starts without interpenetration
# Rejection sampling of part positions: tries per part before starting over, and restarts before the
# grid fallback (which the schema guarantees holds parts_per_episode at min_spacing).
DRAW_TRIES_PER_PART = 30
DRAW_RESTARTS = 20
SETTLE_EPS = 1e-9  # s: settle_time compared on sums of float control periods


def part_class(part_type: PartTypeConfig) -> PartClass:
    """A part type as the camera knows it. A mesh part is known by its bounding box (the viewer's overlay,
    the expert's yaw symmetry); obs_mode "perceived" refuses mesh parts (sim/env.py)."""
    shape = "box" if part_type.shape == "mesh" else part_type.shape
    return PartClass(part_type.name, tuple(part_type.color[:3]), shape, tuple(part_type.size))


def draw_positions(rng: np.random.Generator, n: int, half: tuple[float, float], spacing: float) -> list[tuple[float, float]]:
    """n points in [-half, half] at least `spacing` apart, offsets from the tote centre (m)."""
    hx, hy = half
    for _ in range(DRAW_RESTARTS):
        points: list[tuple[float, float]] = []
        for _ in range(DRAW_TRIES_PER_PART * n):
            x, y = float(rng.uniform(-hx, hx)), float(rng.uniform(-hy, hy))
            if all(math.hypot(x - px, y - py) >= spacing for px, py in points):
                points.append((x, y))
                if len(points) == n:
                    return points
    # Crowded tote: a random choice of grid points min_spacing apart (the schema checked they suffice).
    grid = [(float(x), float(y)) for x in np.arange(-hx, hx + 1e-9, spacing) for y in np.arange(-hy, hy + 1e-9, spacing)]
    return [grid[i] for i in rng.permutation(len(grid))[:n]]


class BinSort(Task):
    episode_kpis = ("sort_accuracy", "parts_per_minute")

    def __init__(self, cell, scenario):
        super().__init__(cell, scenario)
        if cell.tote is None or cell.typed_parts is None:
            raise ValueError("bin_sort needs a tote and typed parts")
        self.tote, self.pool = cell.tote, cell.typed_parts
        self.types = self.config.part_types
        self._type_index = {t.name: i for i, t in enumerate(self.types)}
        self.bins = cell.bins
        # A part resting on another part inside the walls is still inside: containers count up to
        # their wall tops plus the tallest part.
        self._stack_allowance = max(t.size[2] for t in self.types)
        # Made once (the containers never move): resting parts are tested against them every step.
        self._bin_boxes = {name: b.inside(self._stack_allowance) for name, b in self.bins.items()}
        self._tote_box = self.tote.inside(self._stack_allowance)
        self._periods = {t.name: yaw_period(part_class(t)) for t in self.types}
        self._finger_links = frozenset(self.robot.finger_ids)
        self._part_bodies = {p.body: p for p in self.pool.parts}
        # Tote walls, table and bins are fixtures (cell.fixture_names); the tote floor is not: the jaws
        # may touch it from above while grasping.
        self._collisions = CollisionCounter(cell)
        self.parts: list[Part] = []

    @property
    def config(self) -> BinSortTask:
        return self.scenario.task  # type: ignore[return-value]

    # --- episode ------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        cfg, tote = self.config, self.tote.config
        self.pool.reset()
        n = cfg.parts_per_episode
        # Everything is drawn up front, so the RNG stream does not depend on what the robot does.
        kinds = rng.integers(0, len(self.types), size=n).tolist()
        half = tuple(s / 2 - cfg.placement.wall_margin for s in tote.size)
        offsets = draw_positions(rng, n, half, cfg.placement.min_spacing)
        yaws = rng.uniform(*cfg.placement.yaw, size=n).tolist()
        fx, fy, fz = tote.position
        poses = [
            (fx + dx, fy + dy, fz + self.types[k].size[2] / 2 + PLACE_GAP, yaw)
            for k, (dx, dy), yaw in zip(kinds, offsets, yaws)
        ]
        self.parts = self.pool.lay_out(kinds, poses, self.sim.time)
        self._collisions.reset()
        self._holding: set[str] = set()
        self._touching: set[str] = set()
        self._events = {"sorted": 0, "wrong": 0, "dropped": 0, "collisions": 0}
        self._last_outcome_time = self.sim.time
        self._cycles: list[float] = []
        self._placed: dict[str, str] = {}  # part -> the bin it was let go over or came to rest in
        self._poses: dict[str, tuple] = {}
        self.target: Part | None = None
        self._update_target()

    def after_physics(self) -> None:
        # One query for every contact of the robot serves grasp detection, rest detection and collisions.
        contacts = self.robot.contacts()
        self._read_contacts(contacts)
        self._events = {"sorted": 0, "wrong": 0, "dropped": 0, "collisions": self._collisions.update(contacts)}
        now, cfg = self.sim.time, self.config
        self._poses = {}
        for part in self.parts:
            if part.state != "active":
                continue
            pos, _, vel = self._poses[part.name] = self._read_pose(part)
            speed = math.sqrt(vel[0] ** 2 + vel[1] ** 2 + vel[2] ** 2)
            # A part the robot touches is not resting, even when still (pressed, or hanging from one jaw).
            if speed >= cfg.settle_speed or part.name in self._touching:
                part.settle_since = None
                continue
            part.settle_since = now if part.settle_since is None else part.settle_since
            if now - part.settle_since >= cfg.settle_time - SETTLE_EPS:
                outcome, bin_name = self._outcome(part, pos)
                if outcome is not None:
                    self.resolve(part, outcome, now)
                if bin_name is not None:
                    self._placed.setdefault(part.name, bin_name)
        self._update_target()

    def _bin_of(self, pos) -> str | None:
        """The bin whose inner walls hold a point, from its floor up to the wall tops plus the tallest part."""
        return next((name for name, box in self._bin_boxes.items() if box.contains(pos)), None)

    def _outcome(self, part: Part, pos) -> tuple[str | None, str | None]:
        """(outcome, bin) of a resting part: outcome None while it is still in the tote, to be picked."""
        bin_name = self._bin_of(pos)
        if bin_name is not None:
            return ("sorted" if bin_name == part.type.bin else "wrong"), bin_name
        return (None if self._tote_box.contains(pos) else "dropped"), None

    def over_bin(self, bin_name: str, pos) -> bool:
        """Whether a point lies over a bin (within its inner walls, at any height)."""
        c = self.bins[bin_name].config
        return abs(pos[0] - c.position[0]) <= c.size[0] / 2 and abs(pos[1] - c.position[1]) <= c.size[1] / 2

    def sort_bin(self, bin_name: str) -> SortBin:
        b = self.bins[bin_name]
        return SortBin(bin_name, self._bin_boxes[bin_name], tuple(b.config.size))

    def drop_point(self, bin_name: str) -> tuple[float, float, float]:
        """Where the next part for a bin should be released: above the bin's next free quadrant."""
        return self.sort_bin(bin_name).drop_point(sum(b == bin_name for b in self._placed.values()))

    def _let_go_over(self, part: Part) -> str | None:
        """The bin an active part hangs or falls over, untouched, with the jaws commanded open; else None."""
        if part.name in self._touching or self.robot.grip_command > 0:
            return None
        return self.bin_under(self._pose(part)[0])

    def bin_under(self, pos) -> str | None:
        """The bin a point lies over (within its inner walls, at any height), or None."""
        return next((name for name in self.bins if self.over_bin(name, pos)), None)

    def resolve(self, part: Part, outcome: str, now: float) -> None:
        """Record a part's outcome at sim time `now` (s): the events this step and the cycle KPIs."""
        part.state, part.resolved_time = outcome, now
        self._events[outcome] += 1
        if outcome == "sorted":
            # A sorted part's cycle: from the previous part's outcome (or the episode start) to its own.
            self._cycles.append(now - self._last_outcome_time)
        self._last_outcome_time = now

    def _update_target(self) -> None:
        reading = self.robot.reading
        self._tool, self._tool_yaw = reading.tool_pos, reading.tool_yaw
        target = self.target
        if target is not None and target.state == "active":
            bin_name = self._let_go_over(target)
            if bin_name is not None:
                self._placed[target.name] = bin_name  # the next part for this bin goes beside it
                target = None
        if target is None or target.state != "active":  # the nearest to pick (ties: draw order)
            candidates = [p for p in self.parts if p.state == "active" and p.name not in self._placed]
            target = min(candidates, key=lambda p: math.dist(self._pose(p)[0], self._tool)) if candidates else None
        self.target = target
        if self.target is None:
            return
        pos, orn, _ = self._pose(self.target)
        self._part_pos, self._part_yaw = pos, _yaw(orn)
        self._part_held = self.target.name in self._holding
        self._part_in_bin = self._bin_boxes[self.target.type.bin].contains(pos)
        self._drop = self.drop_point(self.target.type.bin)

    def _pose(self, part: Part) -> tuple:
        """(position, orientation, linear velocity) of an active part this step, read once."""
        if part.name not in self._poses:
            self._poses[part.name] = self._read_pose(part)
        return self._poses[part.name]

    def _read_pose(self, part: Part) -> tuple:
        """(position, orientation, linear velocity) of a part, from Bullet."""
        pos, orn = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)
        return pos, orn, pb.getBaseVelocity(part.body, physicsClientId=self.sim.cid)[0]

    def _read_contacts(self, contacts) -> None:
        """Parts touching the robot anywhere; of those, held = touched by every finger."""
        fingers_on: dict[int, set[int]] = {}
        touching = set()
        for c in contacts:
            part = self._part_bodies.get(c[2])
            if part is not None:
                touching.add(part.name)
                if c[3] in self._finger_links:
                    fingers_on.setdefault(c[2], set()).add(c[3])
        self._touching = touching
        self._holding = {self._part_bodies[b].name for b, links in fingers_on.items() if links == self._finger_links}

    # --- observation ----------------------------------------------------------------------------
    def features(self) -> list[Feature]:
        return bin_sort_features(len(self.types), self.config.parts_per_episode)

    def observation(self) -> list[float]:
        n_types, n_parts = len(self.types), self.config.parts_per_episode
        remaining = sum(p.state == "active" and p.name not in self._placed for p in self.parts)  # still to pick
        thermometer = [1.0 if k < remaining else 0.0 for k in range(n_parts)]
        if self.target is None:
            return [0.0] * (3 + 1 + n_types + 2 + 6) + thermometer
        tx, ty, tz = self._tool
        px, py, pz = self._part_pos
        kind = self.target.type
        dx, dy, dz = self._drop
        one_hot = [0.0] * n_types
        one_hot[self._type_index[kind.name]] = 1.0
        rel_yaw = wrap_to_period(self._part_yaw - self._tool_yaw, self._periods[kind.name])
        return [
            px, py, pz, rel_yaw, *one_hot, 1.0, float(self._part_held),
            px - tx, py - ty, pz - tz, dx - tx, dy - ty, dz - tz, *thermometer,
        ]

    # --- reward and outcome ---------------------------------------------------------------------
    def reward(self) -> float:
        w, ev = self.config.reward, self._events
        r = w.sorted * ev["sorted"] + w.wrong_bin * ev["wrong"] + w.dropped * ev["dropped"] + w.collision * ev["collisions"]
        if self.target is None:
            return r
        in_bin, held = self._part_in_bin, self._part_held
        d_tool_part = math.dist(self._part_pos, self._tool)
        d_part_bin = 0.0 if in_bin else math.dist(self._part_pos, self._drop)
        return r + w.tool_to_part * d_tool_part * (not held and not in_bin) + w.part_to_bin * d_part_bin + w.grasped * (held or in_bin)

    def is_success(self) -> bool:
        return bool(self.parts) and all(p.state == "sorted" for p in self.parts)

    def is_terminated(self) -> bool:
        return all(p.state in ("sorted", "wrong", "dropped") for p in self.parts)

    def info(self) -> dict[str, Any]:
        counts = {s: sum(p.state == s for p in self.parts) for s in ("sorted", "wrong", "dropped")}
        info: dict[str, Any] = {
            "is_success": self.is_success(), "collisions": self._collisions.total,
            "parts_sorted": counts["sorted"], "parts_wrong": counts["wrong"], "parts_dropped": counts["dropped"],
        }
        resolved = sum(counts.values())
        # Absent (not NaN) until defined, so infos compare equal across identical runs.
        if resolved:
            info["sort_accuracy"] = counts["sorted"] / resolved
        if self._cycles:
            info["cycle_time"] = float(np.mean(self._cycles))
            info["parts_per_minute"] = 60.0 * counts["sorted"] / self.sim.time
        return info

    # --- ground truth -----------------------------------------------------------------------------
    def perception_classes(self) -> list[PartClass]:
        return [part_class(t) for t in self.types]

    def make_observer(self) -> BinSortObserver:
        return BinSortObserver(self.perception_classes(), [t.bin for t in self.types],
                               [self.sort_bin(name) for name in self.bins], self._tote_box,
                               self.support_z(), self.config.parts_per_episode)

    def perceive(self, detections: list[Detection] | None) -> list[float]:
        return self.observer.observe(detections, robot_state(self.robot), self.sim.time)

    def support_z(self) -> float:
        return float(self.tote.config.position[2])  # the tote floor's top

    def part_truth(self) -> list[PartTruth]:
        """Every part in the scene (not parked), read from Bullet now: what perception should detect."""
        truth = []
        for part in self.parts:
            if part.state == "parked":
                continue
            pos, orn = pb.getBasePositionAndOrientation(part.body, physicsClientId=self.sim.cid)
            kind = part.type
            truth.append({
                "name": part.name, "type": kind.name, "shape": kind.shape, "size": kind.size, "color": kind.color,
                "position": np.array(pos), "yaw": _yaw(orn), "yaw_period": self._periods[kind.name], "state": part.state,
            })
        return truth

    # --- for the scripted expert ----------------------------------------------------------------
    def target_state(self) -> dict[str, Any] | None:
        """The target as the expert sees it: the truth, or in obs_mode "perceived" the observer's estimate."""
        if self.observer is not None:
            return self.observer.target_state()
        if self.target is None:
            return None
        kind = self.target.type
        return {
            "position": np.array(self._part_pos), "yaw": self._part_yaw, "yaw_period": self._periods[kind.name],
            "size": kind.size, "held": self._part_held, "in_bin": self._part_in_bin,
            "drop_point": np.array(self._drop), "type": kind.name, "bin": kind.bin,
        }


def _yaw(quat) -> float:
    x, y, z, w = quat
    return math.atan2(2 * (x * y + z * w), 1 - 2 * (y * y + z * z))
