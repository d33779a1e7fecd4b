"""The safety layer between the policy and the robot: plain clamp functions plus one small filter.

Every command the servo loop sends goes through ``SafetyFilter.apply`` (or ``hold``), which
returns the joint positions actually applied. Each clamp below is a pure function returning
``Clamped(value, intervened)``; changes of direction are avoided by scaling the whole motion
vector, so the tool keeps moving along the commanded line, only slower or shorter.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import Callable, NamedTuple

import numpy as np

from bridge.limits import SafetyLimits

log = logging.getLogger(__name__)

ForwardKinematics = Callable[[np.ndarray], np.ndarray]  # joint positions -> tool xyz (m)

# Relative slack before a speed/box check counts as violated (float rounding after scaling).
_TOLERANCE = 1e-9


class Clamped(NamedTuple):
    value: np.ndarray
    intervened: bool


def _scale_to_limit(delta: np.ndarray, limit: np.ndarray) -> float:
    """Largest factor in [0, 1] that keeps every |delta_i| within limit_i (limits are positive).

    A motion at the limit to within float rounding (relative 1e-9) is not an intervention.
    """
    worst = float((np.abs(delta) / limit).max())
    return 1.0 if worst <= 1.0 + _TOLERANCE else 1.0 / worst


# --------------------------------------------------------------------------------- clamps


def reject_non_finite(command: np.ndarray, fallback: np.ndarray) -> Clamped:
    """A command with any NaN or inf is replaced as a whole by ``fallback`` (never partially used)."""
    if np.all(np.isfinite(command)):
        return Clamped(command, False)
    return Clamped(np.array(fallback, dtype=np.float64), True)


def clamp_joint_positions(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> Clamped:
    """Each joint inside its [lower, upper] range."""
    if (q - lower).min() >= 0.0 and (upper - q).min() >= 0.0:
        return Clamped(q, False)
    return Clamped(np.minimum(np.maximum(q, lower), upper), True)


def clamp_relative_target(q: np.ndarray, q_measured: np.ndarray, max_relative: np.ndarray) -> Clamped:
    """Per-command change cap: the command stays within max_relative of where the robot is measured."""
    delta = q - q_measured
    scale = _scale_to_limit(delta, max_relative)
    if scale == 1.0:
        return Clamped(q, False)
    return Clamped(q_measured + delta * scale, True)


def clamp_joint_velocity(q: np.ndarray, q_prev: np.ndarray, max_velocity: np.ndarray, dt: float) -> Clamped:
    """Motion since the previous command at most max_velocity * dt per joint (direction kept)."""
    delta = q - q_prev
    scale = _scale_to_limit(delta, max_velocity * dt)
    if scale == 1.0:
        return Clamped(q, False)
    return Clamped(q_prev + delta * scale, True)


def clamp_joint_acceleration(
    q: np.ndarray, q_prev: np.ndarray, v_prev: np.ndarray, max_acceleration: np.ndarray, dt: float
) -> Clamped:
    """Velocity change since the previous cycle at most max_acceleration * dt per joint (direction kept)."""
    v = (q - q_prev) / dt
    dv = v - v_prev
    scale = _scale_to_limit(dv, max_acceleration * dt)
    if scale == 1.0:
        return Clamped(q, False)
    return Clamped(q_prev + (v_prev + dv * scale) * dt, True)


def decelerate_to_hold(q_prev: np.ndarray, v_prev: np.ndarray, max_acceleration: np.ndarray, dt: float) -> np.ndarray:
    """Next command of a controlled stop: all joints slow together at the slowest joint's rate.

    The joint that needs longest to stop at its max deceleration sets the stop time T; every
    joint's velocity shrinks by dt/T per cycle, so the path stays straight and all stop together.
    """
    speed = np.abs(v_prev)
    if not speed.any():
        return np.array(q_prev, dtype=np.float64)
    stop_time = float(np.max(speed / max_acceleration))
    factor = max(0.0, 1.0 - dt / stop_time)
    return q_prev + v_prev * factor * dt


def _box_excess(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """How far outside the box the point is along its worst axis (0 inside)."""
    return max(0.0, float((low - point).max()), float((point - high).max()))


def clamp_to_workspace(
    q: np.ndarray, q_prev: np.ndarray, fk: ForwardKinematics, low: np.ndarray, high: np.ndarray, iterations: int = 40
) -> Clamped:
    """Shorten the move so the tool stays in the [low, high] box.

    A tool already outside may move only so as to get closer to the box. Along the joint-space
    segment from q_prev to q, the crossing point is first computed as if the tool moved on a
    straight line (exact for a Cartesian robot) and then confirmed, or found by bisection.
    """
    p_new = fk(q)
    tol = _TOLERANCE * (1.0 + float(np.max(np.abs(high - low))))
    if _box_excess(p_new, low, high) <= tol:
        return Clamped(q, False)
    p_prev = fk(q_prev)
    excess_prev = _box_excess(p_prev, low, high)
    if excess_prev > tol:
        if _box_excess(p_new, low, high) < excess_prev:
            return Clamped(q, False)  # outside but heading back in
        return Clamped(np.array(q_prev, dtype=np.float64), True)
    delta = q - q_prev
    motion = p_new - p_prev
    alpha = 1.0
    for axis in range(3):
        if p_new[axis] > high[axis] and motion[axis] > 0:
            alpha = min(alpha, (high[axis] - p_prev[axis]) / motion[axis])
        elif p_new[axis] < low[axis] and motion[axis] < 0:
            alpha = min(alpha, (low[axis] - p_prev[axis]) / motion[axis])
    if _box_excess(fk(q_prev + alpha * delta), low, high) <= tol:
        if _is_linear_guess_exact(fk, q_prev, delta, p_prev, motion, alpha):
            return Clamped(q_prev + alpha * delta, True)
        inside, outside = alpha, 1.0  # curved: the face lies further along
    else:
        inside, outside = 0.0, alpha
    for _ in range(iterations):
        mid = 0.5 * (inside + outside)
        if _box_excess(fk(q_prev + mid * delta), low, high) <= tol:
            inside = mid
        else:
            outside = mid
    return Clamped(q_prev + inside * delta, True)


def _is_linear_guess_exact(fk, q_prev, delta, p_prev, motion, alpha) -> bool:
    """True when the tool moved along the straight line (a Cartesian axis set, or a tiny step)."""
    expected = p_prev + alpha * motion
    return bool(np.max(np.abs(fk(q_prev + alpha * delta) - expected)) <= _TOLERANCE * (1.0 + float(np.max(np.abs(motion)))))


def limit_tool_speed(q: np.ndarray, q_prev: np.ndarray, fk: ForwardKinematics, max_speed: float, dt: float) -> Clamped:
    """Shorten the move so the tool travels at most max_speed * dt this cycle."""
    budget = max_speed * dt
    p_prev = fk(q_prev)
    delta = q - q_prev
    scale = 1.0
    for _ in range(8):  # exact after one pass when fk is linear; a few more for curved kinematics
        distance = math.dist(fk(q_prev + delta * scale) if scale < 1.0 else fk(q), p_prev)
        if distance <= budget * (1.0 + _TOLERANCE):
            return Clamped(q_prev + delta * scale if scale < 1.0 else q, scale < 1.0)
        scale *= budget / distance
    return Clamped(q_prev + delta * scale * 0.5, True)


# --------------------------------------------------------------------------------- filter


class SafetyFilter:
    """Applies the clamps in a fixed order each servo cycle and remembers what it applied.

    Order: latched stop -> NaN/inf -> joint range -> cap relative to the measured position ->
    velocity -> acceleration -> workspace box -> tool speed -> joint range again (the
    acceleration clamp may carry a moving joint on). Each intervention is counted by kind.
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
        self.limits = limits
        self.dt = float(period_s)
        self.fk = forward_kinematics
        self.q = initial.copy()  # last applied command
        self.v = np.zeros_like(initial)  # velocity of the last applied command
        self.counts: Counter[str] = Counter()
        self.events: deque[tuple[str, str]] = deque(maxlen=100)
        self._reduced_speed = False
        self._latched_reason: str | None = None

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
        q = decelerate_to_hold(self.q, self.v, self.limits.max_acceleration, self.dt)
        q = clamp_joint_positions(q, self.limits.joint_lower, self.limits.joint_upper).value
        return self._commit(q)

    def apply(self, command: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """The joint positions to send for ``command`` this cycle (a copy; never the input)."""
        if self._latched_reason is not None:
            self.counts["latched"] += 1
            return self.hold()
        limits = self.limits
        q = np.asarray(command, dtype=np.float64)
        if q.shape != self.q.shape:
            raise ValueError(f"command has shape {q.shape}; the robot has {self.q.shape[0]} joints")
        q, hit = reject_non_finite(q, self.q)
        if hit:
            self._record("non_finite", f"non-finite command {np.asarray(command).tolist()}")
            return self.hold()
        q = self._step("position", clamp_joint_positions(q, limits.joint_lower, limits.joint_upper), q)
        if measured is not None:
            q = self._step("relative_target", clamp_relative_target(q, measured, limits.max_relative_target), q)
        q = self._step("velocity", clamp_joint_velocity(q, self.q, limits.max_velocity, self.dt), q)
        q = self._step("acceleration", clamp_joint_acceleration(q, self.q, self.v, limits.max_acceleration, self.dt), q)
        if self.fk is not None:
            q = self._step("workspace", clamp_to_workspace(q, self.q, self.fk, limits.workspace_low, limits.workspace_high), q)
            q = self._step("tool_speed", limit_tool_speed(q, self.q, self.fk, self.tool_speed_limit, self.dt), q)
        q = self._step("position", clamp_joint_positions(q, limits.joint_lower, limits.joint_upper), q)
        return self._commit(q)

    def reset_state(self, joints: np.ndarray) -> None:
        """Re-anchor on the measured robot state (start of an episode, after a reconnect at rest)."""
        self.q = np.asarray(joints, dtype=np.float64).copy()
        self.v = np.zeros_like(self.q)

    def report(self) -> dict[str, int]:
        return {kind: int(self.counts.get(kind, 0)) for kind in self.KINDS}

    # ------------------------------------------------------------------ internals

    def _step(self, kind: str, result: Clamped, before: np.ndarray) -> np.ndarray:
        if result.intervened:
            self._record(kind, f"{kind}: {before.tolist()} -> {result.value.tolist()}")
        return result.value

    def _record(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.events.append((kind, text))
        log.debug("safety %s", text)

    def _commit(self, q: np.ndarray) -> np.ndarray:
        self.v = (q - self.q) / self.dt
        self.q = q
        return q.copy()
