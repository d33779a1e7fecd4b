"""The controller runtime: a policy loop at the bundle's rate and a servo loop at the robot's rate.

Policy loop (``control_hz`` from the welcome): at tick k, observe, ask the server with a
deadline of ``latency_budget`` past the tick, map the action to a joint target and queue it to
start at tick_k + latency_budget. Servo loop (``servo_hz``, default 250 Hz, 125-1000): at every
cycle hand the setpoint due now to the ``ServoPipeline`` (bridge/servo.py: linear interpolation
from the last applied command over one control period, ``Watchdog``, ``SafetyFilter``; the
digital twin runs the same pipeline on simulated time) and send what it returns.

Starting each setpoint at a fixed offset after its tick (a jitter buffer of one latency budget)
makes segments chain exactly: reply jitter within the budget never shows on the robot, and a
reply that misses its deadline shows as missed servo cycles, which the ``Watchdog`` turns into
a controlled stop after 2 cycles and a session drop after 1 s.

Imports numpy, pyzmq and msgpack only.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np

from bridge.client import BridgeClient
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter
from bridge.servo import ServoPipeline
from bridge.watchdog import Watchdog

log = logging.getLogger(__name__)

SERVO_HZ_RANGE = (125.0, 1000.0)


class Robot(Protocol):
    """What a controller needs from a robot, real or simulated.

    ``observe`` is called from the policy loop's thread, ``read_joints``/``send_joints`` from the
    servo loop's; a driver must allow that.
    """

    joint_names: Sequence[str]

    def read_joints(self) -> np.ndarray: ...

    def observe(self) -> np.ndarray: ...

    def send_joints(self, q: np.ndarray, now_ns: int) -> None: ...


ActionMapper = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (action, base joint target) -> new target


def joint_delta_mapper(scale: np.ndarray) -> ActionMapper:
    """``joint_delta`` bundles: new target = previous target + action * scale (per joint)."""
    scale = np.asarray(scale, dtype=np.float64)

    def to_target(action: np.ndarray, base: np.ndarray) -> np.ndarray:
        return base + np.asarray(action[: scale.shape[0]], dtype=np.float64) * scale

    return to_target


@dataclass
class ControllerConfig:
    servo_hz: float = 250.0
    latency_budget: float = 0.5  # fraction of the control period a reply may take (and the jitter buffer)
    hold_after_cycles: int = 2
    drop_after_s: float = 1.0
    heartbeat_s: float = 1.0  # send safety/latency stats to the server this often
    reduced_speed: bool = False

    def __post_init__(self) -> None:
        low, high = SERVO_HZ_RANGE
        if not low <= self.servo_hz <= high:
            raise ValueError(f"servo_hz {self.servo_hz} outside {low:g}-{high:g} Hz")
        if not 0.0 < self.latency_budget <= 1.0:
            raise ValueError(f"latency_budget {self.latency_budget} must be in (0, 1] of the control period")


class Setpoint(NamedTuple):
    target: np.ndarray
    start_ns: int  # when the servo loop starts moving towards it
    seq: int


@dataclass
class Event:
    t: float  # monotonic seconds
    kind: str  # hold, resumed, session_dropped, policy_error, ...
    detail: str
    servo_cycle: int


@dataclass
class ControllerReport:
    servo_cycles: int = 0
    servo_overruns: int = 0  # cycles that started more than one period late
    policy_ticks: int = 0
    policy_late_ticks: int = 0  # ticks skipped because the loop itself ran past the budget
    actions_applied: int = 0
    step_status: dict[str, int] = field(default_factory=dict)
    safety: dict[str, int] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


class Controller:
    def __init__(
        self,
        robot: Robot,
        client: BridgeClient,
        limits: SafetyLimits,
        mapper: ActionMapper,
        config: ControllerConfig | None = None,
        forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.robot = robot
        self.client = client
        self.config = config or ControllerConfig()
        self.mapper = mapper
        self.servo_period_ns = int(1e9 / self.config.servo_hz)
        self.safety = SafetyFilter(limits, 1.0 / self.config.servo_hz, robot.read_joints(), forward_kinematics)
        if self.config.reduced_speed:
            self.safety.set_reduced_speed(True)
        self.watchdog = Watchdog(self.config.hold_after_cycles, self.config.drop_after_s)
        self.servo = ServoPipeline(self.safety, self.watchdog)
        self.report = ControllerReport()
        self._lock = threading.Lock()
        self._pending: Setpoint | None = None
        self._stop = threading.Event()
        self._anchor: np.ndarray | None = None  # base for the next delta: last target, None to re-anchor
        self._threads: list[threading.Thread] = []
        self.control_period_ns = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, connect_timeout_s: float = 5.0) -> None:
        welcome = self.client.connect(connect_timeout_s)
        self.control_period_ns = int(1e9 / welcome.control_hz)
        self.safety.limits = self.safety.limits.tighten(welcome.limits)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._servo_loop, name="bridge-servo", daemon=True),
            threading.Thread(target=self._policy_loop, name="bridge-policy", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> ControllerReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []
        self.report.safety = self.safety.report()
        self.report.latency = self.client.stats.summary()
        self.report.client = dict(self.client.counts)
        return self.report

    def run_for(self, seconds: float) -> ControllerReport:
        self.start()
        try:
            time.sleep(seconds)
        finally:
            report = self.stop()
        return report

    def events(self, kind: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self.report.events if kind is None or e.kind == kind]

    # ------------------------------------------------------------------ loops

    def _event(self, kind: str, detail: str) -> None:
        with self._lock:
            self.report.events.append(Event(time.monotonic(), kind, detail, self.report.servo_cycles))
        log.info("controller %s: %s", kind, detail)

    def _policy_loop(self) -> None:
        period = self.control_period_ns
        budget = int(period * self.config.latency_budget)
        next_heartbeat = time.monotonic() + self.config.heartbeat_s
        tick = time.monotonic_ns()
        status = self.report.step_status
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now < tick:
                time.sleep((tick - now) / 1e9)
            if self.watchdog.drop_requested and self.client.connected:
                self.client.drop_session(f"watchdog: no setpoint for {self.config.drop_after_s:g} s")
            self.report.policy_ticks += 1
            remaining = (tick + budget - time.monotonic_ns()) / 1e9
            if remaining <= 0:
                self.report.policy_late_ticks += 1
            else:
                result = self.client.step(self.robot.observe(), remaining)
                status[result.status] = status.get(result.status, 0) + 1
                if result.action is not None:
                    base = self._anchor if self._anchor is not None else self.safety.q.copy()
                    target = self.mapper(result.action, base)
                    self._anchor = target
                    with self._lock:
                        self._pending = Setpoint(target, tick + budget, result.seq)
                else:
                    self._anchor = None  # after a gap, deltas start again from where the robot is held
                    if result.status == "error":
                        self._event("policy_error", f"{result.error_code}: {result.error_text}")
            if time.monotonic() >= next_heartbeat and self.client.connected:
                next_heartbeat = time.monotonic() + self.config.heartbeat_s
                self.client.heartbeat(min(0.05, period / 4e9), {"safety": self.safety.report(), "latency": self.client.stats.summary()})
            tick += period
            if time.monotonic_ns() > tick + period:  # fell a whole period behind: do not burst
                tick = time.monotonic_ns()

    def _servo_loop(self) -> None:
        period = self.servo_period_ns
        tick = time.monotonic_ns()
        report = self.report
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now < tick:
                time.sleep((tick - now) / 1e9)
                now = time.monotonic_ns()
            elif now - tick > period:
                report.servo_overruns += 1
            self._servo_cycle(now)
            report.servo_cycles += 1
            tick += period
            if now - tick > 5 * period:  # resynchronise after a long stall rather than catching up
                tick = now + period

    def _servo_cycle(self, now: int) -> None:
        with self._lock:
            pending = self._pending
            if pending is not None and pending.start_ns <= now:
                self._pending = None
            else:
                pending = None
        servo = self.servo
        if pending is not None:
            if servo.feed(pending.target, pending.start_ns, pending.start_ns + self.control_period_ns):
                self._event("resumed", f"fresh setpoint seq {pending.seq} after a hold")
            self.report.actions_applied += 1
        holds = servo.holds
        applied = servo.cycle(now, self.robot.read_joints())
        if servo.holds > holds:
            self._event("hold", f"no fresh setpoint for {self.watchdog.missed} servo cycles: decelerating to hold")
        self.robot.send_joints(applied, now)
        if self.watchdog.drop_now:
            self._event("session_dropped", f"no setpoint for {self.config.drop_after_s:g} s")
