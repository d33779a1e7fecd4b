"""The SafetyFilter's fast path against its clamps: same limits, same random commands, same bits.

``SafetyFilter.apply`` usually takes a one-pass fast path that only decides that no clamp would
change the command. Here a filter with it and one without (``fast_path=False``: every clamp on
every cycle) are fed 20,000 cycles of seeded random commands, each aimed at one limit of the
current state: exactly on it, a few ulps to 10 % either side, or far beyond; plus NaN and inf,
holds, latched stops, reduced-speed toggles and jumps of the state next to the joint limits and
the workspace faces. Every cycle both must apply the same bits, keep the same velocity and count
the same interventions.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bridge import gantry
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter, float_list_kinematics

CYCLES = 20_000


@float_list_kinematics
def planar_arm(q: list[float]) -> list[float]:
    """Two 0.5 m links in the xy plane: tool xyz for (shoulder, elbow) angles; curved kinematics."""
    return [0.5 * math.cos(q[0]) + 0.5 * math.cos(q[0] + q[1]), 0.5 * math.sin(q[0]) + 0.5 * math.sin(q[0] + q[1]), 0.0]


ARM_SPEC = {
    "model": "planar-2", "joint_names": ["shoulder", "elbow"], "joint_lower": [-2.0, -2.5], "joint_upper": [2.0, 2.5],
    "joint_max_velocity": [2.0, 3.0], "joint_max_acceleration": [30.0, 40.0], "max_relative_target": [0.05, 0.07],
    "max_ee_speed": 2.5, "workspace_low": [-0.6, -0.7, -0.1], "workspace_high": [0.9, 0.8, 0.1],
}
# The gantry's own box lies inside its axis range on every side, so no joint could reach its range limit
# with the tool inside the box; this one is tighter than the axes in x only.
GANTRY_SPEC = {**gantry.robot_spec(), "workspace_low": [-0.4, -0.6, -0.2], "workspace_high": [0.4, 0.6, 0.6]}
# name: (robot spec, list kinematics, start joints, tool axes whose box faces the tool can reach)
ROBOTS = {
    "gantry": (GANTRY_SPEC, gantry.forward_kinematics_floats, [0.0, 0.0, 0.3], (0,)),
    "planar_arm": (ARM_SPEC, planar_arm, [0.3, 0.8], (0, 1)),
}
AIMED = ("position", "velocity", "acceleration", "relative_target", "workspace", "tool_speed")
KINDS = AIMED + ("inside", "beyond", "non_finite")
WEIGHTS = (10, 10, 10, 10, 10, 10, 25, 10, 5)


def solve(g, target: float, s0: float = 0.0, s1: float = 1.0) -> float:
    """s with g(s) == target by the secant method (nan when it does not converge to a finite step)."""
    g0, g1 = g(s0) - target, g(s1) - target
    for _ in range(40):
        if g1 == 0.0 or g1 == g0:
            break
        s0, s1, g0 = s1, s1 - g1 * (s1 - s0) / (g1 - g0), g1
        if not abs(s1) < 1e3:
            return math.nan
        g1 = g(s1) - target
    return s1


class CommandStream:
    """Seeded random commands and state changes, each aimed at one limit of the filter's state."""

    def __init__(self, seed: int, limits: SafetyLimits, fk, dt: float, home: list[float], axes: tuple[int, ...]) -> None:
        self.rng, self.fk, self.dt, self.home, self.axes = random.Random(seed), fk, dt, home, axes
        self.lower, self.upper = limits.joint_lower.tolist(), limits.joint_upper.tolist()
        self.max_velocity = limits.max_velocity.tolist()
        self.step = [v * dt for v in self.max_velocity]
        self.dv = [a * dt for a in limits.max_acceleration.tolist()]
        self.relative = limits.max_relative_target.tolist()
        self.low, self.high = limits.workspace_low.tolist(), limits.workspace_high.tolist()
        self.n = len(self.lower)

    def offset(self, smallest: float = -17.0, largest: float = -1.0) -> float:
        """0 exactly, or plus or minus 10**smallest to 10**largest, log-uniformly: any margin either side of a limit."""
        rng = self.rng
        if rng.random() < 0.2:
            return 0.0
        return rng.choice((-1.0, 1.0)) * 10.0 ** rng.uniform(smallest, largest)

    def factor(self) -> float:
        """1 exactly, or 1 give or take 1e-17 (rounds to 1) to 1e-1."""
        return 1.0 + self.offset()

    def toward(self, v: float) -> float:
        return math.copysign(1.0, v) if v else self.rng.choice((-1.0, 1.0))

    def direction(self, v: list[float]) -> list[float]:
        """This cycle's move if the robot kept its velocity, or a random one from rest."""
        if any(v):
            return [x * self.dt for x in v]
        return [self.rng.uniform(-s, s) for s in self.step]

    def along(self, q: list[float], delta: list[float], s: float) -> list[float]:
        return [p + d * s for p, d in zip(q, delta)]

    def onto_face(self, q: list[float], delta: list[float], axis: int, beyond: float) -> float:
        """s where the tool at q + s * delta is ``beyond`` metres past the box face it moves towards on axis."""
        up = self.fk(self.along(q, delta, 1.0))[axis] > self.fk(q)[axis]
        face = self.high[axis] + beyond if up else self.low[axis] - beyond
        return solve(lambda s: self.fk(self.along(q, delta, s))[axis], face)

    def command(self, kind: str, q: list[float], v: list[float], tool_step: float) -> tuple[list[float], list[float] | None]:
        """(command, measured joint positions or None) for one kind of cycle."""
        rng, n, dt = self.rng, self.n, self.dt
        j = rng.randrange(n)
        command = [p + (x + rng.uniform(-0.5, 0.5) * a) * dt for p, x, a in zip(q, v, self.dv)]
        measured = None if rng.random() < 0.25 else [c + rng.gauss(0.0, r / 4) for c, r in zip(command, self.relative)]
        if kind == "position":  # the joint closest to a range limit (in cycles at full speed), onto it
            gaps = [(min(x - lo, hi - x) / s, i) for i, (x, lo, hi, s) in enumerate(zip(q, self.lower, self.upper, self.step))]
            j = min(gaps)[1]
            bound = self.lower[j] if q[j] - self.lower[j] < self.upper[j] - q[j] else self.upper[j]
            command[j] = bound + self.offset()
        elif kind == "velocity":  # the joint closest to its top speed, at it
            j = max((abs(x) / m, i) for i, (x, m) in enumerate(zip(v, self.max_velocity)))[1]
            command[j] = q[j] + self.toward(v[j]) * self.step[j] * self.factor()
        elif kind == "acceleration":
            command[j] = q[j] + (v[j] + rng.choice((-1.0, 1.0)) * self.dv[j] * self.factor()) * dt
        elif kind == "relative_target":
            measured = list(command)
            measured[j] = command[j] - rng.choice((-1.0, 1.0)) * self.relative[j] * self.factor()
        elif kind == "workspace":  # the tool onto the face ahead, give or take 1e-15 to 1e-2 m (the box has 2e-9 slack)
            delta = self.direction(v)
            s = self.onto_face(q, delta, rng.choice(self.axes), self.offset(-15.0, -2.0))
            if math.isfinite(s):
                command = self.along(q, delta, s)
        elif kind == "tool_speed":
            delta, p0 = self.direction(v), self.fk(q)
            s = solve(lambda s: math.dist(self.fk(self.along(q, delta, s)), p0), tool_step * self.factor(), 0.5, 1.0)
            if math.isfinite(s):
                command = self.along(q, delta, s)
        elif kind == "beyond":
            scale = rng.choice((10.0 * self.step[j], 1.0))
            command = [p + rng.gauss(0.0, scale) for p in q]
        elif kind == "non_finite":
            command[j] = rng.choice((math.nan, math.inf, -math.inf))
            if rng.random() < 0.3:
                command, measured = list(q), [math.nan if i == j else p for i, p in enumerate(q)]
        return command, measured

    def jump(self, kind: str, tool_step: float) -> tuple[list[float], list[float]]:
        """A new state (joints, velocity) from which this cycle's ``kind`` of command may just pass or just not.

        Near the home posture (the tool well inside the box), with joint j next to its limit or at
        full speed, or the tool one cycle before a box face, or at full tool speed.
        """
        rng, dt = self.rng, self.dt
        j = rng.randrange(self.n)
        q = [h + rng.uniform(-10.0, 10.0) * s for h, s in zip(self.home, self.step)]
        v = [rng.choice((0.0, rng.uniform(-0.1, 0.1) * m)) for m in self.max_velocity]
        if kind == "position":
            inward = rng.uniform(0.0, self.step[j])
            up = rng.random() < 0.5
            q[j] = self.upper[j] - inward if up else self.lower[j] + inward
            v[j] = (inward if up else -inward) / dt
        elif kind == "velocity":
            v[j] = rng.choice((-1.0, 1.0)) * (self.max_velocity[j] - rng.uniform(0.0, 0.5) * self.dv[j])
        elif kind == "workspace":
            delta = [rng.uniform(-s, s) for s in self.step]
            s = self.onto_face(q, delta, rng.choice(self.axes), 0.0)
            on_face = self.along(q, delta, s - 1.0)  # one cycle at velocity delta / dt before the face
            if math.isfinite(s) and all(lo <= x <= hi for x, lo, hi in zip(on_face, self.lower, self.upper)):
                q, v = on_face, [d / dt for d in delta]
        elif kind == "tool_speed":
            delta, p0 = [rng.uniform(-s, s) for s in self.step], self.fk(q)
            s = solve(lambda s: math.dist(self.fk(self.along(q, delta, s)), p0), tool_step, 0.5, 1.0)
            if math.isfinite(s) and all(abs(d * s) <= m for d, m in zip(delta, self.step)):
                v = [d * s / dt for d in delta]
        return q, v


def assert_same(fast: SafetyFilter, ref: SafetyFilter, applied: tuple[np.ndarray, np.ndarray], what: str) -> None:
    assert applied[0].tobytes() == applied[1].tobytes(), f"{what}: fast path {applied[0].tolist()}, clamps {applied[1].tolist()}"
    assert fast.v.tobytes() == ref.v.tobytes(), f"{what}: velocity {fast.v.tolist()} vs {ref.v.tolist()}"
    assert fast.report() == ref.report(), f"{what}: counts {fast.report()} vs {ref.report()}"


@pytest.mark.parametrize("robot, dt, seed", [("gantry", 0.001, 1), ("gantry", 0.008, 2), ("planar_arm", 0.001, 3),
                                             ("planar_arm", 0.004, 4)])
def test_fast_path_applies_exactly_what_the_clamps_apply(robot, dt, seed):
    spec, fk, start, axes = ROBOTS[robot]
    limits = SafetyLimits.from_robot_spec(spec)
    fast, ref = (SafetyFilter(limits, dt, np.array(start), fk, fast_path=on) for on in (True, False))
    stream = CommandStream(seed, limits, fk, dt, start, axes)
    rng = stream.rng
    outcomes = {kind: [0, 0] for kind in KINDS}  # kind -> [cycles applied unchanged, cycles a clamp changed]
    for cycle in range(CYCLES):
        if rng.random() < (0.02 if fast.reduced_speed else 0.005):  # reduced speed a fifth of the time
            for f in (fast, ref):
                f.set_reduced_speed(not f.reduced_speed)
        if fast.latched is None and rng.random() < 0.002:
            for f in (fast, ref):
                f.latch_stop("operator stop")
        elif fast.latched is not None and rng.random() < 0.1:
            for f in (fast, ref):
                f.reset_stop()
        if rng.random() < 0.02:
            assert_same(fast, ref, (fast.hold(), ref.hold()), f"cycle {cycle}: hold")
            continue
        if rng.random() < 0.05:  # jump next to a limit, then aim at it
            kind = rng.choice(AIMED)
            q, v = stream.jump(kind, ref.tool_speed_limit * dt)
            for f in (fast, ref):
                f.reset_state(np.array(q))
                f.v = np.array(v)
        else:
            kind = rng.choices(KINDS, WEIGHTS)[0]
        command, measured = stream.command(kind, ref.q.tolist(), ref.v.tolist(), ref.tool_speed_limit * dt)
        before = sum(ref.report().values())
        applied = tuple(f.apply(np.array(command), None if measured is None else np.array(measured)) for f in (fast, ref))
        assert_same(fast, ref, applied, f"cycle {cycle}: {kind} command {command}, measured {measured}")
        outcomes[kind][sum(ref.report().values()) > before] += 1

    # The stream reached every limit, and the commands aimed at each limit fell on both sides of it.
    report = ref.report()
    assert all(report[kind] > 0 for kind in AIMED + ("non_finite", "latched")), report
    assert all(min(outcomes[kind]) >= 40 for kind in AIMED), outcomes
    assert outcomes["inside"][0] > outcomes["inside"][1], outcomes
