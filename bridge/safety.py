"""The safety layer between the policy and the robot: plain clamp functions plus one small filter.

Every command the servo loop sends goes through ``SafetyFilter.apply`` (or ``hold``), which
returns the joint positions actually applied. Each clamp below is a pure function returning
``Clamped(value, intervened)``; changes of direction are avoided by scaling the whole motion
vector, so the tool keeps moving along the commanded line, only slower or shorter.

The arithmetic runs on Python floats (``_``-prefixed functions over lists): a robot has 3-7
joints, and a numpy call costs a microsecond or more of overhead per operation, so the filter
costs a few microseconds per cycle instead of tens to a hundred. Python floats are IEEE doubles
like float64 arrays and every operation is elementwise, so the results are the same bits numpy
would give. The public clamps take and return numpy arrays and share these implementations.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import Callable, NamedTuple, Sequence

import numpy as np

from bridge.limits import SafetyLimits

log = logging.getLogger(__name__)

ForwardKinematics = Callable[[np.ndarray], np.ndarray]  # joint positions -> tool xyz (m)
Vec = list  # list[float]: one value per joint (or per tool axis)

# Relative slack before a speed/box check counts as violated (float rounding after scaling).
_TOLERANCE = 1e-9
_CLAMPED = object()  # SafetyFilter: "some clamp may change this command"


class Clamped(NamedTuple):
    value: np.ndarray
    intervened: bool


def _floats(x: Sequence[float] | np.ndarray) -> Vec:
    if type(x) is np.ndarray and x.dtype == np.float64:
        return x.tolist()
    return np.asarray(x, dtype=np.float64).tolist()


def float_list_kinematics(fk: Callable[[Vec], Vec]) -> Callable[[Vec], Vec]:
    """Mark a forward kinematics function that takes and returns float lists (the filter calls it directly).

    An array-based one is wrapped (list -> array -> list), which costs a few microseconds per call.
    """
    fk.takes_float_lists = True
    return fk


def _list_fk(fk: ForwardKinematics) -> Callable[[Vec], Vec]:
    if getattr(fk, "takes_float_lists", False):
        return fk
    return lambda q: _floats(fk(np.array(q)))


def _result(value: Vec | np.ndarray, hit: bool, given: np.ndarray) -> Clamped:
    return Clamped(np.array(value, dtype=np.float64), True) if hit else Clamped(given, False)


def _scale_to_limit(delta: Vec, limit: Vec) -> float:
    """Largest factor in [0, 1] that keeps every |delta_i| within limit_i (limits are positive).

    A motion at the limit to within float rounding (relative 1e-9) is not an intervention.
    """
    worst = max([abs(d) / m for d, m in zip(delta, limit)])
    return 1.0 if worst <= 1.0 + _TOLERANCE else 1.0 / worst


def _scaled(base: Vec, delta: Vec, scale: float) -> Vec:
    return [b + d * scale for b, d in zip(base, delta)]


def _diff(a: Vec, b: Vec) -> Vec:
    return [x - y for x, y in zip(a, b)]


# --------------------------------------------------------------------------------- clamps


def reject_non_finite(command: np.ndarray, fallback: np.ndarray) -> Clamped:
    """A command with any NaN or inf is replaced as a whole by ``fallback`` (never partially used)."""
    if all(map(math.isfinite, _floats(command))):
        return Clamped(command, False)
    return Clamped(np.array(fallback, dtype=np.float64), True)


def _positions(q: Vec, lower: Vec, upper: Vec) -> tuple[Vec, bool]:
    for x, lo, hi in zip(q, lower, upper):
        if not lo <= x <= hi:
            return [min(max(x, lo), hi) for x, lo, hi in zip(q, lower, upper)], True
    return q, False


def clamp_joint_positions(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Clamped:
    """Each joint inside its [lower, upper] range."""
    value, hit = _positions(_floats(q), _floats(lower), _floats(upper))
    return _result(value, hit, q)


def _move_within(q: Vec, base: Vec, limit: Vec) -> tuple[Vec, bool]:
    """The move from base to q, shortened (direction kept) so each joint moves at most its limit."""
    delta = _diff(q, base)
    scale = _scale_to_limit(delta, limit)
    if scale == 1.0:
        return q, False
    return _scaled(base, delta, scale), True


def clamp_relative_target(q: np.ndarray, q_measured: np.ndarray, max_relative: np.ndarray) -> Clamped:
    """Per-command change cap: the command stays within max_relative of where the robot is measured."""
    value, hit = _move_within(_floats(q), _floats(q_measured), _floats(max_relative))
    return _result(value, hit, q)


def clamp_joint_velocity(q: np.ndarray, q_prev: np.ndarray, max_velocity: np.ndarray, dt: float) -> Clamped:
    """Motion since the previous command at most max_velocity * dt per joint (direction kept)."""
    value, hit = _move_within(_floats(q), _floats(q_prev), [v * dt for v in _floats(max_velocity)])
    return _result(value, hit, q)


def _acceleration(q: Vec, q_prev: Vec, v_prev: Vec, max_dv: Vec, dt: float) -> tuple[Vec, bool]:
    """max_dv: max_acceleration * dt per joint."""
    dv = [(x - p) / dt - v for x, p, v in zip(q, q_prev, v_prev)]
    scale = _scale_to_limit(dv, max_dv)
    if scale == 1.0:
        return q, False
    return [p + (v + d * scale) * dt for p, v, d in zip(q_prev, v_prev, dv)], True


def clamp_joint_acceleration(
    q: np.ndarray, q_prev: np.ndarray, v_prev: np.ndarray, max_acceleration: np.ndarray, dt: float
) -> Clamped:
    """Velocity change since the previous cycle at most max_acceleration * dt per joint (direction kept)."""
    value, hit = _acceleration(_floats(q), _floats(q_prev), _floats(v_prev), [a * dt for a in _floats(max_acceleration)], dt)
    return _result(value, hit, q)


def _decelerate(q_prev: Vec, v_prev: Vec, max_acceleration: Vec, dt: float) -> Vec:
    if not any(v_prev):
        return list(q_prev)
    stop_time = max([abs(v) / a for v, a in zip(v_prev, max_acceleration)])
    factor = max(0.0, 1.0 - dt / stop_time)
    return [q + v * factor * dt for q, v in zip(q_prev, v_prev)]


def decelerate_to_hold(q_prev: np.ndarray, v_prev: np.ndarray, max_acceleration: np.ndarray, dt: float) -> np.ndarray:
    """Next command of a controlled stop: all joints slow together at the slowest joint's rate.

    The joint that needs longest to stop at its max deceleration sets the stop time T; every
    joint's velocity shrinks by dt/T per cycle, so the path stays straight and all stop together.
    """
    return np.array(_decelerate(_floats(q_prev), _floats(v_prev), _floats(max_acceleration), dt), dtype=np.float64)


def _box_excess(point: Vec, low: Vec, high: Vec) -> float:
    """How far outside the box the point is along its worst axis (0 inside)."""
    return max(0.0, max([lo - p for p, lo in zip(point, low)]), max([p - hi for p, hi in zip(point, high)]))


def _box_tolerance(low: Vec, high: Vec) -> float:
    """How far outside the box still counts as inside (float rounding of positions near its faces)."""
    return _TOLERANCE * (1.0 + max([abs(h - lo) for lo, h in zip(low, high)]))


def _workspace(
    q: Vec, q_prev: Vec, fk: Callable[[Vec], Vec], low: Vec, high: Vec, tol: float, iterations: int = 40,
    p_new: Vec | None = None, p_prev: Vec | None = None,
) -> tuple[Vec, bool]:
    """clamp_to_workspace on lists; tol: _box_tolerance(low, high); p_new / p_prev: fk(q) / fk(q_prev) when known."""
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


def clamp_to_workspace(
    q: np.ndarray, q_prev: np.ndarray, fk: ForwardKinematics, low: np.ndarray, high: np.ndarray, iterations: int = 40
) -> Clamped:
    """Shorten the move so the tool stays in the [low, high] box.

    A tool already outside may move only so as to get closer to the box. Along the joint-space
    segment from q_prev to q, the crossing point is first computed as if the tool moved on a
    straight line (exact for a Cartesian robot) and then confirmed, or found by bisection.
    """
    low, high = _floats(low), _floats(high)
    value, hit = _workspace(_floats(q), _floats(q_prev), _list_fk(fk), low, high, _box_tolerance(low, high), iterations)
    return _result(value, hit, q)


def _tool_speed(
    q: Vec, q_prev: Vec, fk: Callable[[Vec], Vec], max_speed: float, dt: float,
    p_new: Vec | None = None, p_prev: Vec | None = None,
) -> tuple[Vec, bool]:
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


def limit_tool_speed(q: np.ndarray, q_prev: np.ndarray, fk: ForwardKinematics, max_speed: float, dt: float) -> Clamped:
    """Shorten the move so the tool travels at most max_speed * dt this cycle."""
    value, hit = _tool_speed(_floats(q), _floats(q_prev), _list_fk(fk), max_speed, dt)
    return _result(value, hit, q)


# --------------------------------------------------------------------------------- filter


class _CycleLimits(NamedTuple):
    """SafetyLimits as Python float lists (what the filter's arithmetic runs on), per servo cycle of dt."""

    joint_lower: Vec
    joint_upper: Vec
    max_acceleration: Vec
    max_relative_target: Vec
    workspace_low: Vec
    workspace_high: Vec
    max_step: Vec  # max_velocity * dt
    max_dv: Vec  # max_acceleration * dt
    box_tolerance: float

    @classmethod
    def of(cls, limits: SafetyLimits, dt: float) -> _CycleLimits:
        lists = {name: _floats(getattr(limits, name)) for name in cls._fields[:6]}
        return cls(**lists, max_step=[v * dt for v in _floats(limits.max_velocity)],
                   max_dv=[a * dt for a in lists["max_acceleration"]],
                   box_tolerance=_box_tolerance(lists["workspace_low"], lists["workspace_high"]))


class SafetyFilter:
    """Applies the clamps in a fixed order each servo cycle and remembers what it applied.

    Order: latched stop -> NaN/inf -> joint range -> cap relative to the measured position ->
    velocity -> acceleration -> workspace box -> tool speed -> joint range again (the
    acceleration clamp may carry a moving joint on). Each intervention is counted by kind.

    ``q`` (last applied command) and ``v`` (its velocity) read and assign as float64 arrays;
    inside, they are kept as float lists, and the tool position of ``q`` is remembered so a
    cycle usually calls forward kinematics once.
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
    ) -> None:
        initial = np.asarray(initial_joints, dtype=np.float64)
        if initial.shape != (limits.n_joints,):
            raise ValueError(f"initial_joints has shape {initial.shape}; the robot has {limits.n_joints} joints")
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self._dt = float(period_s)
        self._reduced_speed = False
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
        q = _decelerate(self._q, self._v, lim.max_acceleration, self.dt)
        q, _ = _positions(q, lim.joint_lower, lim.joint_upper)
        return self._commit(q, None)

    def apply(self, command: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """The joint positions to send for ``command`` this cycle (a copy; never the input)."""
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
        p_new = self._tool_position_if_untouched(q, measured)
        if p_new is not _CLAMPED:  # the usual cycle: no clamp would change q
            return self._commit(q, p_new)
        if not all(map(math.isfinite, q)):
            self._record("non_finite", f"non-finite command {np.asarray(command).tolist()}")
            return self.hold()
        lim, q_prev, dt = self._lim, self._q, self.dt
        q = self._step("position", _positions(q, lim.joint_lower, lim.joint_upper), q)
        if measured is not None:
            q = self._step("relative_target", _move_within(q, measured, lim.max_relative_target), q)
        q = self._step("velocity", _move_within(q, q_prev, lim.max_step), q)
        q = self._step("acceleration", _acceleration(q, q_prev, self._v, lim.max_dv, dt), q)
        p_new = None  # fk(q), kept while q is unchanged
        fk = self._fk
        if fk is not None:
            if self._p is None:
                self._p = fk(q_prev)
            p_new = fk(q)
            moved = self._step("workspace", _workspace(q, q_prev, fk, lim.workspace_low, lim.workspace_high,
                                                       lim.box_tolerance, p_new=p_new, p_prev=self._p), q)
            if moved is not q:
                q, p_new = moved, None
            moved = self._step("tool_speed", _tool_speed(q, q_prev, fk, self.tool_speed_limit, dt, p_new=p_new, p_prev=self._p), q)
            if moved is not q:
                q, p_new = moved, None
        moved = self._step("position", _positions(q, lim.joint_lower, lim.joint_upper), q)
        return self._commit(moved, p_new if moved is q else None)

    def _tool_position_if_untouched(self, q: Vec, measured: Vec | None) -> Vec | None | object:
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

    def _step(self, kind: str, result: tuple[Vec, bool], before: Vec) -> Vec:
        value, intervened = result
        if intervened:
            self._record(kind, f"{kind}: {before} -> {value}")
        return value

    def _record(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.events.append((kind, text))
        log.debug("safety %s", text)

    def _commit(self, q: Vec, p: Vec | None) -> np.ndarray:
        """Make q the applied command (p: its tool position, if known); returns it as a new array."""
        dt = self._dt
        self._v = [(a - b) / dt for a, b in zip(q, self._q)]
        self._v_array = None
        self._q = q
        self._q_array = None
        self._p = p
        return np.array(q, dtype=np.float64)
