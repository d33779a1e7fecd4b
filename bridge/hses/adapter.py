"""The controller adapter: a bundle's ee-delta actions as HSES moves of a Yaskawa GP-class arm.

Each policy period (1 / control_hz, paced on the wall clock) the adapter:

1. reads the status (0x72): an alarm or error, servo off, teach mode, command remote off or a hold on
   stops the policy (the run ends: a person must look at the cell) and reports why, with the added status
   the controller would answer a move with (0x2060, 0x2070, 0x2080, 0x2100, 0x2050);
2. reads the arm over HSES, pulses and Cartesian (0x75), and the task from the cell PC (CellLink), and
   builds the observation in the bundle's layout; the tool pose, yaw and joints come from HSES, the
   gripper opening and (HSES has no velocity read) the tool velocity from the cell (``velocity_source``);
3. asks the policy server (BridgeClient.step, deadline ``latency_budget`` of the period);
4. moves the tool target by the action (the action scales of the cell's spec) through the SafetyFilter
   the twin uses (workspace box, yaw limit, tool speed, lag behind the measured tool);
5. sends it as a linear absolute move (0x8A instance 2, base frame) at the speed that covers the segment
   in one period, and the gripper's output (0x78) when it changes.

A target the controller refuses as out of range (0xB004: beyond the arm's reach inside the safety box)
is counted and skipped: the arm keeps the last target and the next period tries again.

Lost replies: a period whose reads do not all come back is held (no move is sent; the last segment ends
on its target within one period, so the arm stands; no HOLD command is needed) and counted; the next
complete period resumes. After ``outage_limit_s`` without a complete period the episode is stopped
("link lost"), and the next episode starts once the controller answers again (within ``reconnect_s``,
else the run stops). Moves are absolute, so the client's retry of a move is safe (the controller answers a
repeated datagram from its cache). The controller must accept a move while one runs as its new target
(genba hses-sim --replace-moves; docs/hses.md says what a real cell needs).

Standard library, numpy, pyzmq and msgpack only (controller side).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bridge.client import BridgeClient
from bridge.hses.cell_link import CellLink, CellLinkError
from bridge.hses.client import HsesClient
from bridge.hses.errors import DataRangeError, HsesStatusError, HsesTimeout, ManipulatorOperating
from bridge.hses.payloads import CartesianMotion, Frame, StatusBits
from bridge.hses.units import HsesAxes, MoveSpeed, pose_from_wire
from bridge.latency import LatencyStats
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter, float_list_kinematics

GRIPPER_GROUP = 1001  # universal outputs 10010-10017 (OT#1-8); bit 0, OT#1 (10010), closes the gripper
MIN_LINEAR_MM_S = 0.1  # the speed word's unit: a shorter segment takes longer than a period
MAX_LINEAR_MM_S = 2000.0
MIN_SEGMENT_MM = 0.01  # shorter segments go as a turn (angular speed), or not at all
DOWN = (math.pi, 0.0)  # Rx, Ry of a tool pointing straight down
# 0x2010 on a move is the controller refusing a new target while a move runs: the adapter streams one per
# period, so it never works without a controller that replaces the running move.
STREAMING_HINT = {ManipulatorOperating.code: " (the controller refuses a move while one runs; the adapter sends a new target "
                                              "each period, which needs one that replaces the running move: genba hses-sim "
                                              "--replace-moves; docs/hses.md, Streaming)"}


@dataclass
class AdapterConfig:
    latency_budget: float = 0.5  # fraction of the period the policy server may take
    read_margin_s: float = 0.012  # each period starts this long after the controller's step, so reads see it
    outage_limit_s: float = 1.0  # longer without a complete period: the episode stops ("link lost")
    reconnect_s: float = 10.0  # after a lost link, how long to wait for the controller before the run stops
    hses_timeout_s: float = 0.02  # per try; loopback or a cell LAN answers in well under a millisecond
    speed: float = 1.0  # 1 = real time; the emulator must run at the same speed
    # HSES reads positions only. "cell": the tool velocity the cell measures (the bundle's feature is the
    # sim's instantaneous link velocity); "hses": the mean over the period from two HSES readings (about 8x
    # larger at the end of a period, when the arm's PD has nearly settled on its target: policies fail on it).
    velocity_source: str = "cell"


@dataclass
class Stop:
    """Why the adapter stopped the policy: ``reason`` in words, the added status a move would get."""

    reason: str
    added_status: int | None = None
    episode: int | None = None
    step: int | None = None
    ends_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        code = None if self.added_status is None else f"0x{self.added_status:04X}"
        return {"reason": self.reason, "added_status": code, "episode": self.episode, "step": self.step,
                "ends_run": self.ends_run}


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    cycle_time_s: float | None
    periods: int  # policy periods run
    env_steps: int  # the cell's control steps (its episode clock)
    held: int  # periods held for lost replies
    stop: Stop | None = None


@dataclass
class AdapterStats:
    hses_rtt: LatencyStats = field(default_factory=lambda: LatencyStats(1 << 18))
    held_periods: int = 0
    lost_replies: int = 0
    overruns: int = 0  # periods that started late
    policy_status: dict[str, int] = field(default_factory=dict)
    safety: dict[str, int] = field(default_factory=dict)
    stale_reads: int = 0
    refused_moves: int = 0  # targets the controller refused as out of range (0xB004): the arm kept the last one  # periods whose cell reading was of the same step as the one before


def status_fault(status: StatusBits) -> Stop | None:
    """The reason the controller would refuse a move now, as a Stop (None: it may move)."""
    if status.alarm or status.error:
        return Stop("alarm" if status.alarm else "error", 0x2060)
    if not status.play:
        return Stop("teach mode (the mode key is not on play)", 0x2080)
    if not status.command_remote:
        return Stop("command remote is off", 0x2100)
    if not status.servo_on:
        return Stop("servo off", 0x2070)
    if status.hold_command or status.hold_pendant or status.hold_external:
        return Stop("hold is on", 0x2050)
    return None


@float_list_kinematics
def _tool_xyz(q: list[float]) -> list[float]:
    return q[:3]


class HsesAdapter:
    """Runs a bundle's episodes on an HSES controller, with the cell PC for the task and the policy server."""

    def __init__(self, robot: HsesClient, cell: CellLink, policy: BridgeClient, spec: dict[str, Any],
                 limits: SafetyLimits, axes: HsesAxes, config: AdapterConfig | None = None,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.robot, self.cell, self.policy, self.spec, self.limits, self.axes = robot, cell, policy, spec, limits, axes
        self.config = config or AdapterConfig()
        self.log = log
        self.stats = AdapterStats()
        self.control_hz = float(spec["control_hz"])
        self.period = 1.0 / self.control_hz
        scales = {f["name"]: f.get("scale") for f in spec["action"]["features"]}
        self.scale = np.array([float(scales["tool_delta_position"])] * 3 + [float(scales["tool_delta_yaw"])])
        features = spec["observation"]["features"]
        self.obs_low = np.concatenate([np.full(f["size"], f["low"]) for f in features]).astype(np.float32)
        self.obs_high = np.concatenate([np.full(f["size"], f["high"]) for f in features]).astype(np.float32)
        robot_desc = spec["robot"]
        self.base_xyz = np.asarray(robot_desc["base_position"], dtype=float)
        self.base_yaw = float(robot_desc["base_yaw"])
        self._gripper_byte: int | None = None

    # --- HSES exchanges, timed ----------------------------------------------------------------------
    def _timed(self, call, *args, **kwargs):
        start = time.perf_counter_ns()
        try:
            return call(*args, **kwargs)
        finally:
            self.stats.hses_rtt.record(time.perf_counter_ns() - start)

    def read_tool(self) -> tuple[np.ndarray, float, np.ndarray]:
        """World tool position (m), world yaw (rad) and joints (rad), all read over HSES."""
        cart = self._timed(self.robot.read_position, "cartesian")
        pulses = self._timed(self.robot.read_position, "pulse")
        xyz, rotation = pose_from_wire(cart.axes)
        c, s = math.cos(self.base_yaw), math.sin(self.base_yaw)
        world = np.array([c * xyz[0] - s * xyz[1], s * xyz[0] + c * xyz[1], xyz[2]]) + self.base_xyz
        yaw = _wrap(float(rotation[2]) + self.base_yaw)
        return world, yaw, self.axes.pulses_to_radians(pulses.axes)

    def _check_status(self) -> Stop | None:
        stop = status_fault(self._timed(self.robot.read_status))
        if stop is not None and stop.reason == "alarm":
            try:
                alarm = self._timed(self.robot.read_alarm, 1)
                stop.reason = f"alarm {alarm.code} {alarm.name!r}"
            except (HsesTimeout, HsesStatusError):
                pass
        return stop

    def _move(self, current: np.ndarray, target: np.ndarray) -> None:
        """One linear absolute move from the current target to the new one, paced to take one period."""
        distance_mm = float(np.linalg.norm(target[:3] - current[:3])) * 1000.0
        turn_deg = abs(math.degrees(_wrap(float(target[3] - current[3]))))
        if distance_mm >= MIN_SEGMENT_MM:
            speed = MoveSpeed.linear_mm_s(min(MAX_LINEAR_MM_S, max(MIN_LINEAR_MM_S, distance_mm / self.period)))
        elif turn_deg > 1e-4:
            speed = MoveSpeed.angular_deg_s(max(0.1, turn_deg / self.period))
        else:
            return  # already there
        c, s = math.cos(self.base_yaw), math.sin(self.base_yaw)
        dx, dy, dz = target[:3] - self.base_xyz
        base = [c * dx + s * dy, -s * dx + c * dy, dz]
        rz = _wrap(float(target[3]) - self.base_yaw)
        for attempt in (1, 2):  # an absolute move twice is the same move: one more try after a lost reply
            try:
                self._timed(self.robot.move_cartesian, base, [*DOWN, rz], speed, motion=CartesianMotion.LINEAR_ABSOLUTE,
                            frame=Frame.BASE)
                return
            except HsesTimeout:
                self.stats.lost_replies += 1
                if attempt == 2:
                    raise

    def _grip(self, grip: float) -> None:
        byte = 1 if grip > 0 else 0  # the action's meaning: grip > 0 closes, <= 0 opens
        if byte != self._gripper_byte:
            self._timed(self.robot.write_io, GRIPPER_GROUP, byte)
            self._gripper_byte = byte

    # --- the run ------------------------------------------------------------------------------------------
    def prepare(self) -> Stop | None:
        """Before the first episode: the controller must be in play and remote without alarms; servo on."""
        status = self._timed(self.robot.read_status)
        if status.alarm or status.error or not status.play or not status.command_remote:
            return status_fault(status)
        if not status.servo_on:
            self._timed(self.robot.servo, True)
        if status.hold_command:
            self._timed(self.robot.hold, False)
        return None

    def run_episode(self, episode: int, seed: int) -> EpisodeResult:
        cfg, stats = self.config, self.stats
        wall_period = self.period / cfg.speed
        self.cell.reset(seed)
        self.policy.reset(1.0, episode=episode)
        self._gripper_byte = None
        t0 = time.monotonic()
        periods = held = 0
        last_good = t0
        safety: SafetyFilter | None = None
        target = previous_pos = None
        last_step = -1
        sense: dict[str, Any] = {"step": 0, "success": False, "cycle_time": None}
        stop: Stop | None = None
        k = 0
        while True:
            due = t0 + cfg.read_margin_s + k * wall_period
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif k and now - due > wall_period:  # a period (or more) missed: keep the grid, skip to the next
                stats.overruns += 1
                k += int((now - due) // wall_period)
                due = t0 + cfg.read_margin_s + k * wall_period
            k += 1
            try:
                stop = self._check_status()
                if stop is not None:
                    break
                position, yaw, joints = self.read_tool()
                sense = self.cell.sense()
            except HsesTimeout:
                stats.lost_replies += 1
                held += 1
                stats.held_periods += 1
                if time.monotonic() - last_good > cfg.outage_limit_s:
                    stop = Stop(f"link lost: no complete exchange for over {cfg.outage_limit_s:g} s", ends_run=False)
                    break
                continue
            last_good = time.monotonic()
            if sense["done"]:
                break
            if sense["step"] == last_step:
                stats.stale_reads += 1
            last_step = sense["step"]
            measured = np.array([*position, yaw])
            if safety is None:  # the episode's first reading anchors the tool target, as env.reset does
                target = measured.copy()
                safety = SafetyFilter(self.limits, self.period, target, _tool_xyz)
                previous_pos = position
            if cfg.velocity_source == "cell":
                velocity = np.asarray(sense["tool_velocity"], dtype=float)
            else:  # two HSES readings one period apart: the mean velocity over the period
                velocity = (position - previous_pos) / self.period
            previous_pos = position
            obs = np.array([*position, yaw, *velocity, sense["gripper_opening"], *joints, *sense["task"]], dtype=np.float32)
            np.clip(obs, self.obs_low, self.obs_high, out=obs)
            result = self.policy.step(obs, cfg.latency_budget * self.period / cfg.speed)
            stats.policy_status[result.status] = stats.policy_status.get(result.status, 0) + 1
            periods += 1
            if result.action is None:
                continue  # no fresh action: the last segment ends on its target and the arm stands
            action = np.clip(np.nan_to_num(np.asarray(result.action, dtype=float), nan=0.0), -1.0, 1.0)
            safety.q = target
            new_target = safety.apply(target + action[:4] * self.scale, measured)
            try:
                self._move(target, new_target)
                target = new_target
                self._grip(float(action[4]))
            except DataRangeError:  # a target the arm cannot reach (its IK, not the safety box): keep the last one
                stats.refused_moves += 1
            except HsesStatusError as exc:  # the state changed since the status read: the reply says why
                stop = Stop(f"move refused: {exc.name or exc}" + STREAMING_HINT.get(exc.added_status, ""), exc.added_status)
                break
            except HsesTimeout:  # the move's tries both went unanswered (counted in _move)
                held += 1
                stats.held_periods += 1
        if safety is not None:
            for kind, count in safety.report().items():
                stats.safety[kind] = stats.safety.get(kind, 0) + count
        if stop is not None:
            stop.episode, stop.step = episode, sense.get("step")
            self.log(f"episode {episode}: stopped: {stop.reason}"
                     + (f" (added status 0x{stop.added_status:04X})" if stop.added_status else ""))
        success = bool(sense.get("success")) and stop is None
        return EpisodeResult(seed, success, sense.get("cycle_time") if success else None, periods,
                             int(sense.get("step", 0)), held, stop)

    def wait_for_link(self) -> bool:
        """After a lost link: poll the status until the controller answers (True) or ``reconnect_s`` passes."""
        end = time.monotonic() + self.config.reconnect_s
        while time.monotonic() < end:
            try:
                self._timed(self.robot.read_status)
                return True
            except HsesTimeout:
                time.sleep(0.05)
        return False

    def run(self, episodes: int, seeds: list[int]) -> tuple[list[EpisodeResult], Stop | None]:
        """The episodes in order; stops early on a fault that needs a person (alarm, servo off, mode, remote)."""
        stop = self.prepare()
        if stop is not None:
            return [], stop
        results: list[EpisodeResult] = []
        for episode in range(episodes):
            try:
                result = self.run_episode(episode, seeds[episode])
            except CellLinkError as exc:
                return results, Stop(f"cell PC: {exc}", episode=episode)
            results.append(result)
            self.log(f"episode {episode}: {'success' if result.success else 'failure'} after {result.env_steps} steps"
                     + (f", {result.held} periods held" if result.held else ""))
            if result.stop is not None and result.stop.ends_run:
                return results, result.stop
            if result.stop is not None and not self.wait_for_link():
                return results, Stop(f"the controller did not answer again within {self.config.reconnect_s:g} s",
                                     episode=episode)
        return results, None


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
