"""The safety layer between the policy and the robot: plain clamp functions plus one small filter.

Every command the servo loop sends goes through ``SafetyFilter.apply`` (or ``hold``), which
returns the joint positions actually applied. Each clamp below is a pure function over float
sequences returning ``(value, intervened)``: the input itself and False when the limit holds,
else a new list and True. Changes of direction are avoided by scaling the whole motion vector,
so the tool keeps moving along the commanded line, only slower or shorter.

The arithmetic runs on Python floats: a robot has 3-7 joints, and a numpy call costs a
microsecond or more of overhead per operation, so the filter costs a few microseconds per cycle
instead of tens to a hundred. Python floats are IEEE doubles like float64 arrays and every
operation is elementwise, so the results are the same bits numpy would give.

The filter calls these same functions (one implementation per limit). Its usual cycle takes a
fast path instead, one pass that only decides that no clamp would change the command;
tests/test_bridge_safety_fast_path.py checks it against the clamps on random command streams.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from bridge.limits import SafetyLimits

log = logging.getLogger(__name__)

ForwardKinematics = Callable[[np.ndarray], np.ndarray]  # joint positions -> tool xyz (m)
ListKinematics = Callable[[list[float]], Sequence[float]]  # the same on a float list (what the clamps call)
Floats = Sequence[float]  # one value per joint (or per tool axis)
Clamped = tuple[list[float], bool]  # (value, intervened): the input itself when unchanged, else a new list

# Relative slack before a speed/box check counts as violated (float rounding after scaling).
_TOLERANCE = 1e-9
_CLAMPED = object()  # SafetyFilter: "some clamp may change this command"


def _floats(x: Floats | np.ndarray) -> list[float]:
    if type(x) is np.ndarray and x.dtype == np.float64:
        return x.tolist()
    return np.asarray(x, dtype=np.float64).tolist()


def float_list_kinematics(fk: Callable[[list], list]) -> Callable[[list], list]:
    """Mark a forward kinematics function that takes and returns float lists (the filter calls it directly).

    An array-based one is wrapped (list -> array -> list), which costs a few microseconds per call.
    """
    fk.takes_float_lists = True
    return fk


def _list_fk(fk: ForwardKinematics) -> ListKinematics:
    if getattr(fk, "takes_float_lists", False):
        return fk
    return lambda q: _floats(fk(np.array(q)))


def _scale_to_limit(delta: Floats, limit: Floats) -> float:
    """Largest factor in [0, 1] that keeps every |delta_i| within limit_i (limits are positive).

    A motion at the limit to within float rounding (relative 1e-9) is not an intervention.
    """
    worst = max([abs(d) / m for d, m in zip(delta, limit)])
    return 1.0 if worst <= 1.0 + _TOLERANCE else 1.0 / worst


def _scaled(base: Floats, delta: Floats, scale: float) -> list[float]:
    return [b + d * scale for b, d in zip(base, delta)]


def _diff(a: Floats, b: Floats) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def _move_within(q: Floats, base: Floats, limit: Floats) -> Clamped:
    """The move from base to q, shortened (direction kept) so each joint moves at most its limit."""
    delta = _diff(q, base)
    scale = _scale_to_limit(delta, limit)
    if scale == 1.0:
        return q, False
    return _scaled(base, delta, scale), True


def _box_excess(point: Floats, low: Floats, high: Floats) -> float:
    """How far outside the box the point is along its worst axis (0 inside)."""
    return max(0.0, max([lo - p for p, lo in zip(point, low)]), max([p - hi for p, hi in zip(point, high)]))


def _box_tolerance(low: Floats, high: Floats) -> float:
    """How far outside the box still counts as inside (float rounding of positions near its faces)."""
    return _TOLERANCE * (1.0 + max([abs(h - lo) for lo, h in zip(low, high)]))


# --------------------------------------------------------------------------------- clamps
# Each takes float sequences and returns (value, intervened): the input itself and False when
# the limit holds, a new list and True when it acted.


def reject_non_finite(command: Floats, fallback: Floats) -> Clamped:
    """A command with any NaN or inf is replaced as a whole by ``fallback`` (never partially used)."""
    if all(map(math.isfinite, command)):
        return command, False
    return list(fallback), True


def clamp_joint_positions(q: Floats, lower: Floats, upper: Floats) -> Clamped:
    """Each joint inside its [lower, upper] range; joints inside keep their exact value."""
    for x, lo, hi in zip(q, lower, upper):
        if not lo <= x <= hi:
            return [min(max(x, lo), hi) for x, lo, hi in zip(q, lower, upper)], True
    return q, False


def clamp_relative_target(q: Floats, q_measured: Floats, max_relative: Floats) -> Clamped:
    """Per-command change cap: the command stays within max_relative of where the robot is measured.

    A longer move is shortened along its direction, so the joints keep their proportions.
    """
    return _move_within(q, q_measured, max_relative)


def clamp_joint_velocity(q: Floats, q_prev: Floats, max_velocity: Floats, dt: float) -> Clamped:
    """Motion since the previous command at most max_velocity * dt per joint (direction kept)."""
    return _move_within(q, q_prev, [v * dt for v in max_velocity])


def clamp_joint_acceleration(q: Floats, q_prev: Floats, v_prev: Floats, max_acceleration: Floats, dt: float) -> Clamped:
    """Velocity change since the previous cycle at most max_acceleration * dt per joint (direction kept).

    v_prev is the velocity of the previous command, (q_prev - the one before) / dt; braking counts too.
    """
    dv = [(x - p) / dt - v for x, p, v in zip(q, q_prev, v_prev)]
    scale = _scale_to_limit(dv, [a * dt for a in max_acceleration])
    if scale == 1.0:
        return q, False
    return [p + (v + d * scale) * dt for p, v, d in zip(q_prev, v_prev, dv)], True


def decelerate_to_hold(q_prev: Floats, v_prev: Floats, max_acceleration: Floats, dt: float) -> list[float]:
    """Next command of a controlled stop: all joints slow together at the slowest joint's rate.

    The joint that needs longest to stop at its max deceleration sets the stop time T; every
    joint's velocity shrinks by dt/T per cycle, so the path stays straight and all stop together.
    """
    if not any(v_prev):
        return list(q_prev)
    stop_time = max([abs(v) / a for v, a in zip(v_prev, max_acceleration)])
    factor = max(0.0, 1.0 - dt / stop_time)
    return [q + v * factor * dt for q, v in zip(q_prev, v_prev)]


def clamp_to_workspace(
    q: Floats, q_prev: Floats, fk: ListKinematics, low: Floats, high: Floats, *, iterations: int = 40,
    tolerance: float | None = None, p_new: Floats | None = None, p_prev: Floats | None = None,
) -> Clamped:
    """Shorten the move from q_prev to q so the tool (``fk``: float list -> xyz) stays in the [low, high] box.

    A tool already outside may move only so as to get closer to the box. Along the joint-space
    segment from q_prev to q, the crossing point is first computed as if the tool moved on a
    straight line (exact for a Cartesian robot) and then confirmed, or found by bisection.
    ``tolerance``: how far outside still counts as inside (default: 1e-9 relative to the box);
    ``p_new`` / ``p_prev``: fk(q) / fk(q_prev) when the caller knows them already.
    """
    tol = _box_tolerance(low, high) if tolerance is None else tolerance
    if p_new is None:
        p_new = fk(q)
    excess_new = _box_excess(p_new, low, high)
    if excess_new <= tol:
        return q, False
    if p_prev is None:
        p_prev = fk(q_prev)
    excess_prev = _box_excess(p_prev, low, high)
    if excess_prev > tol:
        if excess_new < excess_prev:
            return q, False  # outside but heading back in
        return list(q_prev), True
    delta = _diff(q, q_prev)
    motion = _diff(p_new, p_prev)
    alpha = 1.0
    for axis in range(3):
        if p_new[axis] > high[axis] and motion[axis] > 0:
            alpha = min(alpha, (high[axis] - p_prev[axis]) / motion[axis])
        elif p_new[axis] < low[axis] and motion[axis] < 0:
            alpha = min(alpha, (low[axis] - p_prev[axis]) / motion[axis])
    guess = fk(_scaled(q_prev, delta, alpha))
    if _box_excess(guess, low, high) <= tol:
        # Exact when the tool moved along the straight line (a Cartesian axis set, or a tiny step).
        expected = _scaled(p_prev, motion, alpha)
        if max([abs(g - e) for g, e in zip(guess, expected)]) <= _TOLERANCE * (1.0 + max(map(abs, motion))):
            return _scaled(q_prev, delta, alpha), True
        inside, outside = alpha, 1.0  # curved: the face lies further along
    else:
        inside, outside = 0.0, alpha
    for _ in range(iterations):
        mid = 0.5 * (inside + outside)
        if _box_excess(fk(_scaled(q_prev, delta, mid)), low, high) <= tol:
            inside = mid
        else:
            outside = mid
    return _scaled(q_prev, delta, inside), True


def limit_tool_speed(
    q: Floats, q_prev: Floats, fk: ListKinematics, max_speed: float, dt: float, *,
    p_new: Floats | None = None, p_prev: Floats | None = None,
) -> Clamped:
    """Shorten the move (direction kept in joint space) so the tool travels at most max_speed * dt this cycle.

    ``fk``: float list -> tool xyz; ``p_new`` / ``p_prev``: fk(q) / fk(q_prev) when already known.
    """
    budget = max_speed * dt
    if p_prev is None:
        p_prev = fk(q_prev)
    delta = _diff(q, q_prev)
    scale = 1.0
    for _ in range(8):  # exact after one pass when fk is linear; a few more for curved kinematics
        if scale < 1.0:
            p = fk(_scaled(q_prev, delta, scale))
        else:
            p = fk(q) if p_new is None else p_new
        distance = math.dist(p, p_prev)
        if distance <= budget * (1.0 + _TOLERANCE):
            return (_scaled(q_prev, delta, scale), True) if scale < 1.0 else (q, False)
        scale *= budget / distance
    return _scaled(q_prev, delta, scale * 0.5), True


# --------------------------------------------------------------------------------- filter


class _CycleLimits(NamedTuple):
    """SafetyLimits as Python float lists (what the filter's arithmetic runs on), per servo cycle of dt."""

    joint_lower: list
    joint_upper: list
    max_velocity: list
    max_acceleration: list
    max_relative_target: list
    workspace_low: list
    workspace_high: list
    max_step: list  # max_velocity * dt (the fast path's bound; the clamp computes the same product)
    max_dv: list  # max_acceleration * dt (likewise)
    box_tolerance: float

    @classmethod
    def of(cls, limits: SafetyLimits, dt: float) -> _CycleLimits:
        lists = {name: _floats(getattr(limits, name)) for name in cls._fields[:7]}
        return cls(**lists, max_step=[v * dt for v in lists["max_velocity"]],
                   max_dv=[a * dt for a in lists["max_acceleration"]],
                   box_tolerance=_box_tolerance(lists["workspace_low"], lists["workspace_high"]))


class SafetyFilter:
    """Applies the clamps in a fixed order each servo cycle and remembers what it applied.

    Order: latched stop -> NaN/inf (command or measured position: hold) -> joint range -> cap
    relative to the measured position -> velocity -> acceleration -> workspace box -> tool speed
    -> joint range again (the acceleration clamp may carry a moving joint on). Each intervention
    is counted by kind.

    ``q`` (last applied command) and ``v`` (its velocity) read and assign as float64 arrays;
    inside, they are kept as float lists, and the tool position of ``q`` is remembered so a
    cycle usually calls forward kinematics once. ``fast_path=False`` runs every clamp on every
    cycle and computes the previous tool position afresh: the reference the fast path and that
    cache are tested against (the applied commands are the same bits, only slower).
    """

    KINDS = (
        "non_finite",
        "position",
        "relative_target",
        "velocity",
        "acceleration",
        "workspace",
        "tool_speed",
        "hold",
        "latched",
    )

    def __init__(
        self,
        limits: SafetyLimits,
        period_s: float,
        initial_joints: np.ndarray,
        forward_kinematics: ForwardKinematics | None = None,
        *,
        fast_path: bool = True,
    ) -> None:
        initial = np.asarray(initial_joints, dtype=np.float64)
        if initial.shape != (limits.n_joints,):
            raise ValueError(f"initial_joints has shape {initial.shape}; the robot has {limits.n_joints} joints")
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self._dt = float(period_s)
        self._reduced_speed = False
        self._fast_path = bool(fast_path)
        self.limits = limits
        self.fk = forward_kinematics
        self._fk = None if forward_kinematics is None else _list_fk(forward_kinematics)
        self.q = initial  # last applied command (a copy is kept)
        self.v = [0.0] * initial.shape[0]  # velocity of the last applied command
        self.counts: Counter[str] = Counter()
        self.events: deque[tuple[str, str]] = deque(maxlen=100)
        self._latched_reason: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def limits(self) -> SafetyLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: SafetyLimits) -> None:
        self._limits = limits
        self._lim = _CycleLimits.of(limits, self._dt)
        self._tool_step = self.tool_speed_limit * self._dt  # the tool's longest move in one cycle

    @property
    def dt(self) -> float:
        """The servo period (s) the filter was made for."""
        return self._dt

    @property
    def q(self) -> np.ndarray:
        if self._q_array is None:
            self._q_array = np.array(self._q, dtype=np.float64)
        return self._q_array

    @q.setter
    def q(self, value: np.ndarray) -> None:
        self._q = _floats(value)
        self._q_array = None
        self._p = None  # tool position of q, computed when needed

    @property
    def v(self) -> np.ndarray:
        if self._v_array is None:
            self._v_array = np.array(self._v, dtype=np.float64)
        return self._v_array

    @v.setter
    def v(self, value: np.ndarray) -> None:
        self._v = _floats(value)
        self._v_array = None

    # ------------------------------------------------------------------ modes

    @property
    def reduced_speed(self) -> bool:
        return self._reduced_speed

    def set_reduced_speed(self, enabled: bool) -> None:
        """Reduced-speed mode caps the tool at limits.reduced_tool_speed (<= 0.25 m/s)."""
        if enabled and self.fk is None:
            raise RuntimeError(
                "reduced-speed mode needs the tool position: pass forward_kinematics= to SafetyFilter"
            )
        self._reduced_speed = bool(enabled)
        self._tool_step = self.tool_speed_limit * self._dt

    @property
    def latched(self) -> str | None:
        """The reason of the latched stop, or None when commands flow."""
        return self._latched_reason

    def latch_stop(self, reason: str) -> None:
        """Stop (controlled deceleration, then hold) until ``reset_stop`` is called."""
        if self._latched_reason is None:
            self._latched_reason = reason
            self._record("latched", reason)

    def reset_stop(self) -> None:
        """Explicit operator reset of a latched stop. Motion resumes from the held position."""
        self._latched_reason = None

    @property
    def tool_speed_limit(self) -> float:
        return self.limits.reduced_tool_speed if self._reduced_speed else self.limits.max_tool_speed

    # ------------------------------------------------------------------ commands

    def hold(self) -> np.ndarray:
        """No fresh command: decelerate under the acceleration limit, then stand still."""
        lim = self._lim
        q = decelerate_to_hold(self._q, self._v, lim.max_acceleration, self._dt)
        q, _ = clamp_joint_positions(q, lim.joint_lower, lim.joint_upper)
        return self._commit(q, None)

    def apply(self, command: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """The joint positions to send for ``command`` this cycle (a copy; never the input).

        ``measured``: the robot's measured joint positions, for the relative-target cap (None: no cap).
        """
        if self._latched_reason is not None:
            self.counts["latched"] += 1
            return self.hold()
        if type(command) is np.ndarray and command.ndim == 1:
            q = command.tolist()  # float32 values widen exactly, as np.asarray(command, float64) would
        elif np.ndim(command) == 1:
            q = _floats(command)
        else:
            q = None
        if q is None or len(q) != len(self._q):
            raise ValueError(f"command has shape {np.shape(command)}; the robot has {len(self._q)} joints")
        measured = None if measured is None else _floats(measured)
        if self._fast_path:
            p_new = self._tool_position_if_untouched(q, measured)
            if p_new is not _CLAMPED:  # the usual cycle: no clamp would change q
                return self._commit(q, p_new)
        lim, q_prev, dt = self._lim, self._q, self._dt
        for name, values in (("command", q), ("measured position", measured)):
            if values is not None and reject_non_finite(values, q_prev)[1]:
                self._record("non_finite", f"non-finite {name} {values}")
                return self.hold()  # a controlled stop, not a jump to the fallback
        q = self._step("position", clamp_joint_positions(q, lim.joint_lower, lim.joint_upper), q)
        if measured is not None:
            q = self._step("relative_target", clamp_relative_target(q, measured, lim.max_relative_target), q)
        q = self._step("velocity", clamp_joint_velocity(q, q_prev, lim.max_velocity, dt), q)
        q = self._step("acceleration", clamp_joint_acceleration(q, q_prev, self._v, lim.max_acceleration, dt), q)
        p_new = None  # fk(q), kept while q is unchanged
        fk = self._fk
        if fk is not None:
            if self._p is None or not self._fast_path:  # the reference computes everything afresh
                self._p = fk(q_prev)
            p_new = fk(q)
            moved = self._step("workspace", clamp_to_workspace(
                q, q_prev, fk, lim.workspace_low, lim.workspace_high, tolerance=lim.box_tolerance,
                p_new=p_new, p_prev=self._p), q)
            if moved is not q:
                q, p_new = moved, None
            moved = self._step("tool_speed", limit_tool_speed(
                q, q_prev, fk, self.tool_speed_limit, dt, p_new=p_new, p_prev=self._p), q)
            if moved is not q:
                q, p_new = moved, None
        moved = self._step("position", clamp_joint_positions(q, lim.joint_lower, lim.joint_upper), q)
        return self._commit(moved, p_new if moved is q else None)

    def _tool_position_if_untouched(self, q: list, measured: list | None) -> list | None | object:
        """fk(q) (None without kinematics) when no clamp of apply() would change q; else _CLAMPED.

        One pass over the joints instead of a pass per clamp. Each test is the strict form of its
        clamp's (no rounding slack, same float expressions), so passing here means every clamp
        would return q as it is; anything else, NaN included, takes the clamps, which decide.
        """
        lim, q_prev, dt = self._lim, self._q, self._dt
        for x, p, v, lo, hi, step, dv in zip(q, q_prev, self._v, lim.joint_lower, lim.joint_upper, lim.max_step, lim.max_dv):
            d = x - p
            if not (lo <= x <= hi and -step <= d <= step and -dv <= d / dt - v <= dv):
                return _CLAMPED
        if measured is not None:
            for x, m, most in zip(q, measured, lim.max_relative_target):
                if not -most <= x - m <= most:
                    return _CLAMPED
        fk = self._fk
        if fk is None:
            return None
        if self._p is None:
            self._p = fk(q_prev)
        p_new = fk(q)
        for c, lo, hi in zip(p_new, lim.workspace_low, lim.workspace_high):
            if not lo <= c <= hi:
                return _CLAMPED
        if math.dist(p_new, self._p) > self._tool_step:
            return _CLAMPED
        return p_new

    def reset_state(self, joints: np.ndarray) -> None:
        """Re-anchor on the measured robot state (start of an episode, after a reconnect at rest)."""
        self.q = joints
        self.v = [0.0] * len(self._q)

    def report(self) -> dict[str, int]:
        return {kind: int(self.counts.get(kind, 0)) for kind in self.KINDS}

    # ------------------------------------------------------------------ internals

    def _step(self, kind: str, result: Clamped, before: list) -> list:
        value, intervened = result
        if intervened:
            self._record(kind, f"{kind}: {before} -> {value}")
        return value

    def _record(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.events.append((kind, text))
        log.debug("safety %s", text)

    def _commit(self, q: list, p: list | None) -> np.ndarray:
        """Make q the applied command (p: its tool position, if known); returns it as a new array."""
        dt = self._dt
        self._v = [(a - b) / dt for a, b in zip(q, self._q)]
        self._v_array = None
        self._q = q
        self._q_array = None
        self._p = p
        return np.array(q, dtype=np.float64)
