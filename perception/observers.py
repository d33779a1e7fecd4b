"""From what a cell PC senses to the observation a policy was trained on.

A policy trained in the simulator observes the robot's own state (what any controller reads) and the
task's features, which the simulator computes from exact part poses. On a real cell the task's
features come from the camera instead: an observer turns the detections of `perception.localize`,
the robot's own sensors (tool pose and velocity, gripper opening and command) and the cell's fixed
facts (a belt's speed, a bin's place) into the same features, in the same layout and units, so a
bundle trained on state runs unchanged. The simulator's `perceived` observation mode runs exactly
this code on its rendered camera frames.

What the camera cannot tell is inferred as a controller would:
- a part is held while the gripper is commanded closed and its fingers rest on something the part's
  width apart (closed to within GRIP_MARGIN of the width, yet open wider than half of it), after
  closing next to the part's last seen place; it then sits centred between the jaws (parallel jaws
  centre what they close on) at the height it had when they closed, and moves with the tool, but never
  below where it would rest on its support (jaws pressing a part onto a belt or floor do not push it through);
- a part hidden under the arm keeps moving with the belt it lies on, for `max_blind_s`;
- a part let go over its bin falls onto the bin's floor and stays the part worked on until it has lain
  still there as long as the task's `settle_s` asks, as the simulator's truth does (a policy trained on
  the truth lifts away from a part it has just released, not past it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from perception.errors import PerceptionError
from perception.localize import Detection, PartClass, wrap_angle

Feature = tuple[str, int, str]  # name, size, unit

# The task features of conveyor-pick, in order (sim/tasks/conveyor_pick.py observes the same from the truth).
CONVEYOR_PICK_FEATURES: list[Feature] = [
    ("part_position", 3, "m"),
    ("part_velocity", 3, "m/s"),
    ("part_minus_tool", 3, "m"),
    ("part_yaw_minus_tool_yaw", 1, "rad"),
    ("part_held", 1, "bool"),
    ("part_present", 1, "bool"),
    ("bin_drop_point_minus_tool", 3, "m"),
    ("belt_velocity", 3, "m/s"),
]

HELD_OPENING_FRACTION = 0.5  # held: fingers stay open wider than this share of the part's narrower side ...
GRIP_MARGIN = 0.01  # m: ... and have closed to within this of it (still closing, they do not hold it yet)
GRASP_RADIUS = 0.06  # m: the gripper closes on a part only if the part was last seen this close to the tool
TRACK_GATE = 0.05  # m: a detection this close to where the part should be is that part
ON_SUPPORT_TOLERANCE = 0.015  # m: a part whose centre is this close to resting height lies on its support
GRAVITY = 9.81  # m/s^2


@dataclass(frozen=True)
class RobotState:
    """What the controller reads of its own robot each control period."""

    tool_position: tuple[float, float, float]  # m, world
    tool_yaw: float  # rad
    tool_velocity: tuple[float, float, float]  # m/s, world
    gripper_opening: float  # m between the fingers
    grip_command: float  # -1 fully open .. +1 fully closed


def grasp_offset(part: np.ndarray, tool: np.ndarray) -> np.ndarray:
    """Where a part just grasped sits relative to the tool point: centred between the jaws, at its height."""
    return np.array([0.0, 0.0, part[2] - tool[2]])


def gripping(robot: RobotState, width: float) -> bool:
    """Whether the gripper, commanded closed, rests on something `width` wide (m) between its fingers."""
    opening = robot.gripper_opening
    return robot.grip_command > 0.0 and HELD_OPENING_FRACTION * width < opening < width + GRIP_MARGIN


@dataclass(frozen=True)
class BinBox:
    """Where a bin is: its drop point and the box of its inside (m, world)."""

    drop_point: tuple[float, float, float]
    low: tuple[float, float, float]
    high: tuple[float, float, float]
    floor_z: Optional[float] = None  # m: the top of its floor; None: the inside's low z

    def contains(self, point: Sequence[float]) -> bool:
        x, y, z = point  # written out: envs ask every step, and a generator costs several times the comparisons
        (lx, ly, lz), (hx, hy, hz) = self.low, self.high
        return bool(lx <= x <= hx and ly <= y <= hy and lz <= z <= hz)  # a bool for numpy points too

    def resting_z(self, part_height: float) -> float:
        """The centre height of a part lying on this bin's floor (m)."""
        return (self.low[2] if self.floor_z is None else self.floor_z) + part_height / 2.0


@dataclass(frozen=True)
class Release:
    """A part let go over a bin: it falls straight onto the floor, then lies still for `settle_s`."""

    time: float  # s
    height: float  # m: the part's centre when let go
    resting_z: float  # m: its centre once on the floor
    settle_s: float

    def z_and_vz(self, now: float) -> tuple[float, float]:
        """Centre height (m) and vertical speed (m/s) at `now`."""
        t = max(0.0, now - self.time)
        z = self.height - 0.5 * GRAVITY * t * t
        return (self.resting_z, 0.0) if z <= self.resting_z else (z, -GRAVITY * t)

    def settled(self, now: float) -> bool:
        fall_s = math.sqrt(2.0 * max(0.0, self.height - self.resting_z) / GRAVITY)
        return now - self.time >= fall_s + self.settle_s - 1e-9


@dataclass
class PartEstimate:
    """The part the robot works on, as the observer believes it is now."""

    position: np.ndarray  # m, centre, world
    velocity: np.ndarray  # m/s
    yaw: float  # rad, world
    held: bool
    seen_at: float  # s: when the camera last saw it
    in_bin: bool = False


class ConveyorPickObserver:
    """conveyor-pick's task features from the belt camera's detections and the robot's own sensors."""

    def __init__(self, part: PartClass, belt_top_z: float, belt_direction: Sequence[float], bin_box: BinBox,
                 max_blind_s: float = 1.5, settle_s: float = 0.0) -> None:
        if part.shape != "box":
            raise PerceptionError(f"conveyor-pick's parts are boxes; class {part.name!r} is a {part.shape}")
        direction = np.asarray(belt_direction, dtype=np.float64)
        if direction.shape != (3,) or not np.linalg.norm(direction) > 0:
            raise PerceptionError(f"belt_direction must be a non-zero 3-vector, got {belt_direction!r}")
        self.part, self.bin = part, bin_box
        self.resting_z = belt_top_z + part.size[2] / 2.0  # a part's centre height while it rides the belt
        self.belt_direction = direction / np.linalg.norm(direction)
        self.max_blind_s, self.settle_s = max_blind_s, settle_s
        self.part_width = min(part.size[0], part.size[1])
        self.reset()

    @staticmethod
    def features() -> list[Feature]:
        return list(CONVEYOR_PICK_FEATURES)

    def reset(self) -> None:
        self.estimate: Optional[PartEstimate] = None
        self._grasp: Optional[tuple[np.ndarray, float]] = None  # part - tool offset, tool yaw at the grasp
        self._release: Optional[Release] = None  # the part was let go over the bin
        self._time: Optional[float] = None

    def observe(self, detections: Optional[Sequence[Detection]], robot: RobotState, belt_velocity: Sequence[float],
                time: float) -> list[float]:
        """The task features now (CONVEYOR_PICK_FEATURES' order and units).

        detections: what perception found in a frame taken now, or None when no new frame came this
        period (a camera slower than the control rate): the part then rides on as predicted.
        """
        self._update(detections, robot, np.asarray(belt_velocity, dtype=np.float64), time)
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        drop = (np.asarray(self.bin.drop_point) - tool).tolist()
        belt = [float(v) for v in belt_velocity]
        est = self.estimate
        if est is None:
            return [0.0] * 12 + drop + belt
        rel_yaw = wrap_angle(est.yaw - robot.tool_yaw, math.pi / 2)
        return [*est.position.tolist(), *est.velocity.tolist(), *(est.position - tool).tolist(), rel_yaw,
                float(est.held), 1.0, *drop, *belt]

    def part_state(self) -> Optional[dict]:
        """The estimate as the scripted expert reads the simulator's truth: position, velocity, yaw, held, in_bin."""
        est = self.estimate
        if est is None:
            return None
        return {"position": est.position.copy(), "velocity": est.velocity.copy(), "yaw": est.yaw, "held": est.held,
                "in_bin": est.in_bin}

    # ------------------------------------------------------------------ internals

    def _update(self, detections: Optional[Sequence[Detection]], robot: RobotState, belt_velocity: np.ndarray, time: float) -> None:
        dt = 0.0 if self._time is None else max(0.0, time - self._time)
        self._time = time
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        est = self.estimate
        if est is not None and self._release is not None:  # falling into the bin, then lying still
            if not self._release.settled(time):
                est.position[2], vz = self._release.z_and_vz(time)
                est.velocity = np.array([0.0, 0.0, vz])
                est.in_bin = self.bin.contains(est.position)
                return
            self.estimate = est = self._release = None  # placed: done with this part
        if est is not None and gripping(robot, self.part_width):
            if self._grasp is None and np.linalg.norm(est.position - tool) <= GRASP_RADIUS:
                self._grasp = (grasp_offset(est.position, tool), robot.tool_yaw)
            if self._grasp is not None:  # it moves with the tool
                offset, yaw_at_grasp = self._grasp
                est.position, est.velocity = tool + offset, np.asarray(robot.tool_velocity, dtype=np.float64)
                if not self._over_bin(est.position) and est.position[2] < self.resting_z:  # pressed onto the belt
                    est.position[2], est.velocity[2] = self.resting_z, 0.0
                est.yaw = est.yaw + (robot.tool_yaw - yaw_at_grasp)
                self._grasp = (offset, robot.tool_yaw)
                est.held, est.in_bin = True, self.bin.contains(est.position)
                return
        if est is not None and est.held:  # just let go
            self._grasp = None
            est.held = False
            if self.bin.contains(est.position) or self._over_bin(est.position):
                self._release = Release(time, float(est.position[2]), self.bin.resting_z(self.part.size[2]), self.settle_s)
                est.velocity = np.zeros(3)
                return
        if detections is None:  # no new frame: predict
            seen = None
        else:
            candidates = [d for d in detections if d.class_name == self.part.name and not self._over_bin(d.position)]
            seen = self._match(candidates, dt)
        if seen is not None:
            position = np.asarray(seen.position, dtype=np.float64)
            on_belt = abs(position[2] - self.resting_z) <= ON_SUPPORT_TOLERANCE
            if on_belt:
                velocity = belt_velocity.copy()
            elif est is not None and dt > 0:
                velocity = (position - est.position) / dt
            else:
                velocity = np.zeros(3)
            self.estimate = PartEstimate(position, velocity, float(seen.yaw), False, time, self.bin.contains(position))
        elif est is not None and (detections is None or time - est.seen_at <= self.max_blind_s):  # not seen now: it rides on
            est.position = est.position + est.velocity * dt
            est.in_bin = self.bin.contains(est.position)
        else:
            self.estimate = None

    def _match(self, candidates: list[Detection], dt: float) -> Optional[Detection]:
        if not candidates:
            return None
        est = self.estimate
        if est is None:  # a new part: the one furthest along the belt came first
            return max(candidates, key=lambda d: float(np.dot(d.position, self.belt_direction)))
        predicted = est.position + est.velocity * dt
        nearest = min(candidates, key=lambda d: float(np.linalg.norm(np.asarray(d.position) - predicted)))
        return nearest if np.linalg.norm(np.asarray(nearest.position) - predicted) <= TRACK_GATE else None

    def _over_bin(self, position: Sequence[float]) -> bool:
        return all(lo <= p <= hi for p, lo, hi in zip(position[:2], self.bin.low[:2], self.bin.high[:2]))


# bin-sort: parts of one class land side by side in their bin: the n-th release goes over quadrant
# n mod 4 (offsets as fractions of the bin's inner size from its centre).
DROP_SLOTS = ((-0.25, -0.25), (0.25, 0.25), (-0.25, 0.25), (0.25, -0.25))


def yaw_period(part: PartClass) -> float:
    """The turn after which a part looks the same from above (rad); 0 = any turn (a cylinder)."""
    if part.shape == "cylinder":
        return 0.0
    return math.pi / 2 if part.square else math.pi


def wrap_to_period(angle: float, period: float) -> float:
    """angle wrapped to [-period/2, period/2); 0 for a part that looks the same at every yaw."""
    return 0.0 if period == 0.0 else wrap_angle(angle, period)


@dataclass(frozen=True)
class SortBin:
    """One bin of a sorting cell: its name, its inside (m, world) and the height to release over it."""

    name: str
    box: BinBox
    size: tuple[float, float]  # inner x, y (m)

    def drop_point(self, fill: int) -> tuple[float, float, float]:
        """Where the next part goes, `fill` parts released into this bin before it."""
        fx, fy = DROP_SLOTS[fill % len(DROP_SLOTS)]
        x, y, z = self.box.drop_point
        return (x + fx * self.size[0], y + fy * self.size[1], z)

    def drop_point_near(self, xy: Sequence[float]) -> tuple[float, float, float]:
        """The point of the bin's middle (the rectangle the quadrants' drop points span) nearest `xy`: a drop
        point that does not depend on how many parts the bin holds, for a student that cannot see that."""
        x, y, z = self.box.drop_point
        sx, sy = (max(abs(slot[i]) for slot in DROP_SLOTS) * self.size[i] for i in (0, 1))
        return (min(max(xy[0], x - sx), x + sx), min(max(xy[1], y - sy), y + sy), z)


def bin_sort_features(n_classes: int, parts_per_episode: int) -> list[Feature]:
    """The task features of bin-sort, in order (sim/tasks/bin_sort.py observes the same from the truth)."""
    return [
        ("part_position", 3, "m"),
        ("part_yaw_minus_tool_yaw", 1, "rad"),  # wrapped to the part's symmetry; 0 for a cylinder
        ("part_class", n_classes, "bool"),  # one-hot, in the cell's class order
        ("part_present", 1, "bool"),
        ("part_held", 1, "bool"),
        ("part_minus_tool", 3, "m"),
        ("bin_drop_point_minus_tool", 3, "m"),  # over the next free quadrant of the target's bin
        # Thermometer code: element k is 1 while more than k parts are left (a count within the
        # [0, 1] bounds the feature units allow).
        ("parts_remaining", parts_per_episode, "bool"),
    ]


@dataclass
class TargetEstimate:
    """The part the robot sorts now, as the observer believes it is."""

    part: PartClass
    position: np.ndarray  # m, centre, world
    yaw: float  # rad, world
    held: bool
    seen_at: float  # s


class BinSortObserver:
    """bin-sort's task features from the tote camera's detections and the robot's own sensors.

    The target is the part nearest the tool among those seen in the tote, kept until it is let go over a
    bin (then the next is the nearest at once, as in sim/tasks/bin_sort.py); a part hidden under the arm
    stays where it was last seen (parts in the tote lie still) for `max_blind_s`. Parts left = parts seen
    in the tote, plus the target when it is hidden or held.
    """

    def __init__(self, classes: Sequence[PartClass], class_bins: Sequence[str], bins: Sequence[SortBin], tote: BinBox,
                 support_z: float, parts_per_episode: int, max_blind_s: float = 3.0) -> None:
        if len(classes) != len(class_bins) or not classes:
            raise PerceptionError(f"bin-sort needs one bin per class: {len(classes)} classes, {len(class_bins)} bins")
        self.classes = list(classes)
        self.bins = {b.name: b for b in bins}
        unknown = sorted(set(class_bins) - set(self.bins))
        if unknown:
            raise PerceptionError(f"bin-sort classes name bins {unknown} that are not in {sorted(self.bins)}")
        self.class_bin = {c.name: b for c, b in zip(classes, class_bins)}
        self.index = {c.name: i for i, c in enumerate(classes)}
        self.tote, self.support_z = tote, support_z  # the tote, and the height of its floor (m)
        self.parts_per_episode, self.max_blind_s = parts_per_episode, max_blind_s
        self.reset()

    def features(self) -> list[Feature]:
        return bin_sort_features(len(self.classes), self.parts_per_episode)

    def reset(self) -> None:
        self.estimate: Optional[TargetEstimate] = None  # the part being sorted
        self.fill = {name: 0 for name in self.bins}  # parts released over each bin so far
        self._grasp: Optional[tuple[np.ndarray, float]] = None
        self._in_tote: list[Detection] = []  # the last frame's detections in the tote
        self._frame_time = -math.inf
        self._remaining = 0

    def observe(self, detections: Optional[Sequence[Detection]], robot: RobotState, time: float) -> list[float]:
        """The task features now (bin_sort_features' order and units); detections None: no new frame this period."""
        self._update(detections, robot, time)
        n = len(self.classes)
        thermometer = [1.0 if k < self._remaining else 0.0 for k in range(self.parts_per_episode)]
        est = self.estimate
        if est is None:
            return [0.0] * (3 + 1 + n + 2 + 6) + thermometer
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        one_hot = [0.0] * n
        one_hot[self.index[est.part.name]] = 1.0
        rel_yaw = wrap_to_period(est.yaw - robot.tool_yaw, yaw_period(est.part))
        drop = np.asarray(self.drop_point(), dtype=np.float64)
        return [*est.position.tolist(), rel_yaw, *one_hot, 1.0, float(est.held), *(est.position - tool).tolist(),
                *(drop - tool).tolist(), *thermometer]

    def drop_point(self) -> tuple[float, float, float]:
        """Where the target goes: over the next free quadrant of its class's bin."""
        name = self.class_bin[self.estimate.part.name]
        return self.bins[name].drop_point(self.fill[name])

    def target_state(self) -> Optional[dict]:
        """The target as the scripted expert reads the simulator's truth."""
        est = self.estimate
        if est is None:
            return None
        bin_name = self.class_bin[est.part.name]
        return {"position": est.position.copy(), "yaw": est.yaw, "yaw_period": yaw_period(est.part), "size": est.part.size,
                "held": est.held, "in_bin": self.bins[bin_name].box.contains(est.position),
                "drop_point": np.array(self.drop_point()), "type": est.part.name, "bin": bin_name}

    # ------------------------------------------------------------------ internals

    def _update(self, detections: Optional[Sequence[Detection]], robot: RobotState, time: float) -> None:
        tool = np.asarray(robot.tool_position, dtype=np.float64)
        fresh = detections is not None
        if fresh:
            self._in_tote = [d for d in detections if d.class_name in self.index and _over(self.tote, d.position)]
            self._frame_time = time
        in_tote = self._in_tote
        est = self.estimate
        if est is not None:
            width = min(est.part.size[0], est.part.size[1])
            if gripping(robot, width) and (self._grasp is not None or np.linalg.norm(est.position - tool) <= GRASP_RADIUS):
                if self._grasp is None:
                    self._grasp = (grasp_offset(est.position, tool), robot.tool_yaw)
                offset, yaw_before = self._grasp
                est.position, est.yaw, est.held = tool + offset, est.yaw + (robot.tool_yaw - yaw_before), True
                resting_z = self.support_z + est.part.size[2] / 2.0
                if _over(self.tote, est.position) and est.position[2] < resting_z:  # pressed onto the tote floor
                    est.position[2] = resting_z
                self._grasp = (offset, robot.tool_yaw)
                self._remaining = len(in_tote) + 1
                return
            if est.held:  # just let go
                self._grasp, est.held = None, False
                over = next((name for name, b in self.bins.items() if _over(b.box, est.position)), None)
                if over is not None:  # over a bin: done with it, and the bin's next part goes beside it
                    self.fill[over] += 1
                    self.estimate = est = None
        if est is not None and fresh:
            same = [d for d in in_tote if d.class_name == est.part.name
                    and np.linalg.norm(np.asarray(d.position) - est.position) <= TRACK_GATE]
            if same:
                seen = min(same, key=lambda d: float(np.linalg.norm(np.asarray(d.position) - est.position)))
                est.position, est.yaw, est.seen_at = np.asarray(seen.position, dtype=np.float64), float(seen.yaw), time
            elif time - est.seen_at > self.max_blind_s:
                self.estimate = est = None
        if est is None and in_tote:  # the last frame's parts lie where they were seen
            seen = min(in_tote, key=lambda d: (float(np.linalg.norm(np.asarray(d.position) - tool)), d.class_name))
            part = self.classes[self.index[seen.class_name]]
            self.estimate = est = TargetEstimate(part, np.asarray(seen.position, dtype=np.float64), float(seen.yaw), False,
                                                 self._frame_time)
        hidden = est is not None and est.seen_at < self._frame_time  # not in the last frame
        self._remaining = len(in_tote) + (1 if hidden else 0)


def _over(box: BinBox, position: Sequence[float]) -> bool:
    """Whether a point lies over a box's inside (any height)."""
    return all(lo <= p <= hi for p, lo, hi in zip(position[:2], box.low[:2], box.high[:2]))
