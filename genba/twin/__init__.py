"""The digital twin: a PyBullet cell acting as the robot controller, served through the real bridge.

    genba bridge twin SCENARIO --connect ENDPOINT --bundle DIR [--episodes N] [--servo-hz HZ] [--json PATH] [--web]

Each control period (paced by the wall clock, ``speed`` times real time) the twin observes the
cell, asks the server for an action through ``BridgeClient`` (optionally through injected faults:
added latency, jitter, dropped replies), and turns it into a stream of tool-target setpoints at
``servo_hz``: linear interpolation from the current target to the new one, every sample through
the ``SafetyFilter`` (tool workspace box, per-axis speed and acceleration, tool speed, the
reduced-speed mode), the ``Watchdog`` holding after 2 servo cycles without a fresh setpoint.
The cell takes one command per control period, so it is driven to the last applied setpoint of
each period; when the safety layer changed nothing, the env gets the policy's action bit for
bit, so with no faults the twin reproduces ``genba eval`` episode by episode.

With ``--web`` the twin serves the same live page as ``genba view --web`` (genba.viewer.live.LiveView,
imported only then): the cell's camera, the viewer's status fields, plus the round trip, deadline
misses, safety interventions and holds. Pause freezes the cell: no requests and no physics step (in
the sim, a frozen cell is a robot held still), with a heartbeat each second so neither the server
(10 s session timeout) nor the client drops the session; step runs one control period; reset ends
the episode (it counts, as a failure unless the cell already reported success).

Supports ``ee_delta`` bundles (the cells' default action kind). Episodes use the same seeds as
``genba eval`` (policies.evaluate.EVAL_SEED_OFFSET + seed + i).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge.client import BridgeClient, ClientConfig, StepResult
from bridge.keys import ClientKeys
from bridge.limits import REDUCED_TOOL_SPEED, SafetyLimits
from bridge.safety import SafetyFilter, float_list_kinematics
from bridge.watchdog import ServoState, Watchdog
from genba.errors import AppError

YAW_LIMIT = math.pi / 2  # the cells clamp the tool yaw target to +-90 degrees
MAX_TARGET_LAG = 0.08  # m: the cells keep the tool target within this of the measured tool


class TwinError(AppError):
    """A twin that cannot run: unsupported bundle, scenario mismatch, bad option."""


@dataclass
class Faults:
    latency_ms: float = 0.0  # added before each request is sent
    jitter_ms: float = 0.0  # plus uniform [0, jitter_ms)
    drop_rate: float = 0.0  # fraction of replies thrown away as if lost
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0 or not 0.0 <= self.drop_rate <= 1.0:
            raise TwinError(f"faults must be non-negative and drop rate in [0, 1], got {self}")


class FaultyLink:
    """Wraps a client's step with injected latency, jitter and lost replies (controller side)."""

    def __init__(self, client: BridgeClient, faults: Faults) -> None:
        self.client, self.faults = client, faults
        self.rng = np.random.default_rng(faults.seed)
        self.dropped = 0
        self.delayed_ms = 0.0

    def step(self, obs: np.ndarray, deadline_s: float) -> StepResult:
        f = self.faults
        delay = (f.latency_ms + (self.rng.uniform(0.0, f.jitter_ms) if f.jitter_ms else 0.0)) / 1e3
        if delay:
            time.sleep(min(delay, max(deadline_s, 0.0)))
            self.delayed_ms += delay * 1e3
        if deadline_s - delay <= 0:  # the injected delay alone used up the budget: nothing is sent
            self.client.stats.miss()
            return StepResult("deadline", None, 0)
        result = self.client.step(obs, deadline_s - delay)
        if result.status == "ok" and f.drop_rate and self.rng.random() < f.drop_rate:
            self.dropped += 1
            return result._replace(status="dropped", action=None)
        return result


@dataclass
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port
    fps: float = 10.0


@dataclass
class TwinConfig:
    scenario: str
    endpoint: str
    bundle: Path
    episodes: int = 20
    seed: int = 0
    servo_hz: float = 250.0
    speed: float = 1.0  # 1 = real time, 2 = twice as fast, 0 = as fast as possible
    latency_budget: float = 0.5  # fraction of the control period a reply may take
    reduced_speed: bool = False
    max_tool_accel: float | None = None  # m/s^2 on the tool target; None: see tool_target_limits
    robot: str | None = None
    faults: Faults = field(default_factory=Faults)
    keys: ClientKeys | None = None
    web: WebOptions | None = None  # serve the live page (needs the viewer's aiohttp)


@dataclass
class TwinReport:
    scenario: str
    bundle: str
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_cycle_time_s: float | None
    control_steps: int
    round_trip: dict[str, Any]
    deadline_misses: int
    step_status: dict[str, int]
    safety_interventions: dict[str, int]  # per servo sample, by kind
    steps_changed_by_safety: int  # control periods whose command the safety layer (or a hold) altered
    holds: int
    faults: dict[str, Any]
    overruns: int  # control periods that started late
    wall_s: float
    servo_hz: float  # effective: a whole number of servo cycles per control period
    speed: float
    episode_success: list[bool]
    episode_steps: list[int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        return d

    def lines(self) -> list[str]:
        lo, hi = self.success_ci95
        rt = {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")) for k, v in self.round_trip.items()}
        ms = lambda key: "n/a" if math.isnan(rt[key]) else f"{rt[key] / 1e3:.2f} ms"  # noqa: E731
        ct = "n/a" if self.mean_cycle_time_s is None else f"{self.mean_cycle_time_s:.2f} s"
        changed = {k: v for k, v in self.safety_interventions.items() if v}
        return [
            f"twin {self.scenario} via bundle {self.bundle!r}: success {self.success_rate:.1%} [{lo:.1%}, {hi:.1%}] "
            f"over {self.episodes} episodes, cycle time {ct}",
            f"round trip p50 {ms('p50_us')}, p99 {ms('p99_us')}, max {ms('max_us')}; "
            f"deadline misses {self.deadline_misses} of {self.control_steps} steps; statuses {self.step_status}",
            f"safety interventions {changed or 'none'} ({self.steps_changed_by_safety} of {self.control_steps} steps changed); "
            f"watchdog holds {self.holds}; late control periods {self.overruns}",
            f"faults {self.faults}",
        ]


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / "manifest.json" if bundle.is_dir() else bundle
    if not path.is_file():
        raise TwinError(f"--bundle {bundle}: no manifest.json there (pass the bundle directory the server serves)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TwinError(f"{path}: not valid JSON ({exc})") from None


def check_bundle_matches_env(manifest: dict[str, Any], spec: dict[str, Any]) -> None:
    """The bundle's observation features and action kind must be those of this cell."""
    want = [(f["name"], int(f["size"])) for f in manifest["observation"]["features"]]
    have = [(f["name"], int(f["size"])) for f in spec["observation"]["features"]]
    if want != have:
        raise TwinError(f"bundle {manifest['name']!r} observes {want}, the cell gives {have}: wrong scenario or robot?")
    if manifest["action"]["kind"] != "ee_delta" or spec["action"]["kind"] != "ee_delta":
        raise TwinError(f"the twin drives ee_delta bundles; bundle {manifest['name']!r} is {manifest['action']['kind']!r}")


def tool_target_limits(robot: dict[str, Any], yaw_rate: float, servo_hz: float, max_accel: float | None = None) -> SafetyLimits:
    """Safety limits of the tool target (x, y, z, yaw) from a manifest's robot section.

    Speeds are the robot's rated tool speed per axis (what an action of 1 commands). The cells'
    robot specs rate no Cartesian acceleration and the policies step their target once per
    control period, so unless ``max_accel`` (m/s^2, or the spec's ``max_ee_acceleration``) is
    given, the stream may reverse at full speed between two servo cycles: the acceleration clamp
    then only shapes the stop to hold. The target may lead the measured tool by the cells' 8 cm.
    """
    v = float(robot["max_ee_speed"])
    speed = np.array([v, v, v, yaw_rate])
    accel = max_accel if max_accel is not None else robot.get("max_ee_acceleration")
    acceleration = 2.0 * speed * servo_hz
    if accel is not None:
        if not accel > 0:
            raise TwinError(f"--max-tool-accel must be positive, got {accel}")
        acceleration[:3] = float(accel)
        acceleration[3] = float(accel) * yaw_rate / v  # the same time to full speed as the xyz axes
    return SafetyLimits(
        joint_names=("x", "y", "z", "yaw"),
        joint_lower=np.array([*robot["workspace_low"], -YAW_LIMIT], dtype=float),
        joint_upper=np.array([*robot["workspace_high"], YAW_LIMIT], dtype=float),
        max_velocity=speed,
        max_acceleration=acceleration,
        max_relative_target=np.array([MAX_TARGET_LAG] * 3 + [2 * YAW_LIMIT]),
        workspace_low=np.asarray(robot["workspace_low"], dtype=float),
        workspace_high=np.asarray(robot["workspace_high"], dtype=float),
        max_tool_speed=v * math.sqrt(3.0),  # an action of 1 on every axis: what the cells allow
        reduced_tool_speed=REDUCED_TOOL_SPEED,
        model=str(robot.get("model", "")),
    )


@float_list_kinematics
def _tool_xyz(q: list[float]) -> list[float]:
    return q[:3]


class _ServoStream:
    """One control period of servo samples, through the watchdog and the safety filter."""

    def __init__(self, safety: SafetyFilter, watchdog: Watchdog, cycles: int, period_ns: int) -> None:
        self.safety, self.watchdog, self.cycles, self.period_ns = safety, watchdog, cycles, period_ns
        self.holds = 0

    def run(self, start: np.ndarray, target: np.ndarray | None, measured: np.ndarray, t0_ns: int) -> tuple[np.ndarray, bool]:
        """Samples from start to target (None: no fresh setpoint); returns (last applied, any change)."""
        safety, dog = self.safety, self.watchdog
        step_ns = self.period_ns // self.cycles
        changed = False
        if target is not None:
            dog.fed(t0_ns)
        for i in range(1, self.cycles + 1):
            now = t0_ns + i * step_ns
            fresh = target is not None
            before = dog.state
            state = dog.tick(fresh, now)
            if state is ServoState.HOLD:
                if before is not ServoState.HOLD:
                    self.holds += 1
                    safety.counts["hold"] += 1
                applied = safety.hold()
                changed = True
            elif fresh:
                command = start + (target - start) * (i / self.cycles)
                applied = safety.apply(command, measured)
                changed |= not np.array_equal(applied, command)
            else:  # coasting: stay on the last setpoint
                applied = safety.apply(safety.q.copy(), measured)
        return safety.q.copy(), changed


PAUSED_POLL_S = 0.02  # how often a paused twin looks for the viewer's requests
PAUSED_HEARTBEAT_S = 1.0  # a paused twin still tells the server it is alive (sessions expire after 10 s)


class _LivePage:
    """Feeds a LiveView: the viewer loop's status keys (so the page's plots work) plus the bridge's counters."""

    def __init__(self, view, env, labels: dict[str, Any]) -> None:
        self.view, self.env, self.labels = view, env, labels
        self.rendered: tuple[int, int] | None = None  # (episode, step) of the last frame
        self.round_trip_ms: float | None = None  # latest answered request

    def publish(self, key: tuple[int, int], status: dict[str, Any] | None = None) -> None:
        frame = None
        if self.view.wants_frame(changed=key != self.rendered):  # renders only for a watcher, within the fps cap
            frame, self.rendered = self.env.render(), key
        if frame is not None or status is not None:
            self.view.push(frame, status)

    def status(self, *, episode: int, step: int, reward: float, ret: float, info: dict[str, Any], action, robot,
               client: BridgeClient, result: StepResult | None, safety_counts: dict[str, int], holds: int,
               step_status: dict[str, int]) -> dict[str, Any]:
        if result is not None and result.status == "ok":
            self.round_trip_ms = result.rtt_ns / 1e6
        p99_us = client.stats.summary()["p99_us"]
        status = dict(self.labels)
        status.update(episode=episode + 1, step=step, reward=reward, **{"return": ret},
                      success=bool(info.get("is_success", False)), joint_positions=robot.joint_positions())
        if action is not None:
            status["action"] = np.asarray(action, dtype=float)
        status.update(
            round_trip_ms=self.round_trip_ms, round_trip_p99_ms=None if math.isnan(p99_us) else p99_us / 1e3,
            deadline_misses=client.stats.deadline_misses, safety_interventions=sum(safety_counts.values()),
            safety={k: v for k, v in safety_counts.items() if v}, holds=holds, step_status=dict(step_status),
        )
        return status

    def wait_while_paused(self, client: BridgeClient, key: tuple[int, int]):
        """Returns the viewer's Controls once a step may run (resumed, a step click) or a reset is asked."""
        beat = time.monotonic() + PAUSED_HEARTBEAT_S
        while True:
            controls = self.view.poll()
            if controls.reset or controls.step or not controls.paused:
                return controls
            self.publish(key)  # a new watcher or a /frame.jpg still gets a frame of the frozen cell
            if time.monotonic() >= beat:
                client.heartbeat(0.05)
                beat = time.monotonic() + PAUSED_HEARTBEAT_S
            time.sleep(PAUSED_POLL_S)


def run_twin(config: TwinConfig, log=print) -> TwinReport:
    """Run the episodes and return the report (the server must already be serving the bundle)."""
    import sim  # noqa: F401  (registers the cells; the twin alone may import pybullet)
    from policies.evaluate import EVAL_SEED_OFFSET, wilson_interval
    from policies.spec import flatten_obs

    manifest = read_manifest(config.bundle)
    with ExitStack() as stack:
        env = sim.make_env(config.scenario, robot=config.robot, render_mode="rgb_array" if config.web else None)
        stack.callback(env.close)
        cell = env.unwrapped
        spec = cell.feature_spec()
        check_bundle_matches_env(manifest, spec)
        control_hz = float(spec["control_hz"])
        scales = {f["name"]: f.get("scale") for f in spec["action"]["features"]}
        pos_scale, yaw_scale = float(scales["tool_delta_position"]), float(scales["tool_delta_yaw"])
        scale = np.array([pos_scale] * 3 + [yaw_scale])
        if not config.servo_hz >= control_hz:
            raise TwinError(f"--servo-hz {config.servo_hz:g} must be at least the control rate {control_hz:g} Hz")
        cycles = max(1, int(round(config.servo_hz / control_hz)))
        limits = tool_target_limits(spec["robot"], yaw_scale * control_hz, cycles * control_hz, config.max_tool_accel)
        order = tuple(manifest["observation"].get("layout", {}).get("order", ()))
        robot_desc = {"model": spec["robot"]["model"], "joint_names": spec["robot"]["joint_names"]}
        client = BridgeClient(ClientConfig(
            config.endpoint, manifest["name"], manifest["spec_hash"], robot=robot_desc, name=f"twin-{config.scenario}",
            keys=config.keys,
        ))
        stack.callback(client.close)
        link = FaultyLink(client, config.faults)
        welcome = client.connect(10.0)
        if abs(welcome.control_hz - control_hz) > 1e-9:
            raise TwinError(f"bundle runs at {welcome.control_hz:g} Hz, the cell at {control_hz:g} Hz")
        page = None
        if config.web is not None:
            from genba.viewer.live import LiveView, is_loopback  # aiohttp: only when asked for

            web = config.web
            view = stack.enter_context(LiveView(web.host, web.port, web.fps, f"twin {config.scenario} ({manifest['name']})"))
            page = _LivePage(view, env, {"scenario": config.scenario, "driver": f"bridge {manifest['name']}"})
            if not is_loopback(web.host):
                log(f"warning: the live view listens on {web.host}: anyone on that network can pause and reset the twin")
            log(f"live view: {view.url}")
        return _episodes(config, env, cell, link, client, limits, scale, cycles, control_hz, order, flatten_obs,
                         EVAL_SEED_OFFSET, wilson_interval, manifest["name"], log, page)


def _episodes(config, env, cell, link, client, limits, scale, cycles, control_hz, order, flatten_obs, seed_offset,
              wilson_interval, bundle_name, log, page: _LivePage | None = None) -> TwinReport:
    period_s = 1.0 / control_hz
    wall_period = period_s / config.speed if config.speed > 0 else 0.0
    budget_s = period_s * config.latency_budget / (config.speed if config.speed > 0 else 1.0)
    period_ns = int(period_s * 1e9)
    robot = cell.robot
    successes, cycle_times, steps_total, overruns, steps_changed = 0, [], 0, 0, 0
    outcomes: list[bool] = []
    lengths: list[int] = []
    status: dict[str, int] = {}
    safety_total: dict[str, int] = {}
    holds = 0
    started = time.monotonic()
    for episode in range(config.episodes):
        obs, info = env.reset(seed=seed_offset + config.seed + episode)
        client.reset(1.0, episode=episode)
        target = np.array([*robot.target_pos, robot.target_yaw])
        safety = SafetyFilter(limits, period_s / cycles, target, _tool_xyz)  # whole servo cycles per period
        if config.reduced_speed:
            safety.set_reduced_speed(True)
        stream = _ServoStream(safety, Watchdog(hold_after=2, drop_after_s=1.0), cycles, period_ns)
        grip, done, sim_ns, steps = -1.0, False, 0, 0
        reward, ret, env_action, result = 0.0, 0.0, None, None

        def publish() -> None:
            counts = {k: safety_total.get(k, 0) + v for k, v in safety.report().items()}
            page.publish((episode, steps), page.status(
                episode=episode, step=steps, reward=reward, ret=ret, info=info, action=env_action, robot=robot,
                client=client, result=result, safety_counts=counts, holds=holds + stream.holds, step_status=status))

        if page is not None:
            publish()
        tick = time.monotonic()
        while not done:
            if page is not None:
                controls = page.wait_while_paused(client, (episode, steps))
                if controls.reset:
                    log(f"episode {episode}: reset from the live view")
                    break
                if controls.paused:  # time spent paused is not a late control period
                    tick = time.monotonic()
            if wall_period:
                now = time.monotonic()
                if now < tick:
                    time.sleep(tick - now)
                elif now - tick > wall_period:
                    overruns += 1
                    tick = now
            result = link.step(flatten_obs(obs, order) if order else np.asarray(obs, dtype=np.float32), budget_s)
            status[result.status] = status.get(result.status, 0) + 1
            current = np.array([*robot.target_pos, robot.target_yaw])
            measured = np.array([*robot.tool_pos, robot.tool_yaw])
            safety.q = current  # the cell's own target is the truth (it clips to its workspace too)
            if result.action is not None:
                action = np.asarray(result.action, dtype=np.float64)
                wanted = current + action[:4] * scale
                grip = float(np.clip(action[4], -1.0, 1.0)) if math.isfinite(action[4]) else grip
                applied, changed = stream.run(current, wanted, measured, sim_ns)
            else:
                action, (applied, changed) = None, stream.run(current, None, measured, sim_ns)
            if action is not None and not changed:
                env_action = action  # bit for bit what the policy said
            else:
                env_action = np.append(np.clip((applied - current) / scale, -1.0, 1.0), grip)
                steps_changed += 1
            obs, reward, terminated, truncated, info = env.step(env_action.astype(np.float32))
            done = terminated or truncated
            sim_ns += period_ns
            steps += 1
            ret += float(reward)
            if page is not None:
                publish()
            tick += wall_period
        steps_total += steps
        holds += stream.holds
        for kind, count in safety.report().items():
            safety_total[kind] = safety_total.get(kind, 0) + count
        success = bool(info.get("is_success", False))
        successes += success
        outcomes.append(success)
        lengths.append(steps)
        if success:
            cycle_times.append(float(info.get("cycle_time", steps / control_hz)))
        log(f"episode {episode}: {'success' if success else 'failure'} after {steps} steps")
    n = config.episodes
    return TwinReport(
        scenario=config.scenario, bundle=bundle_name, episodes=n, successes=successes,
        success_rate=successes / n if n else 0.0, success_ci95=wilson_interval(successes, n),
        mean_cycle_time_s=float(np.mean(cycle_times)) if cycle_times else None, control_steps=steps_total,
        round_trip=client.stats.summary(), deadline_misses=client.stats.deadline_misses, step_status=status,
        safety_interventions=safety_total, steps_changed_by_safety=steps_changed, holds=holds,
        faults={**asdict(config.faults), "dropped": link.dropped, "added_latency_ms_total": round(link.delayed_ms, 1)},
        overruns=overruns, wall_s=time.monotonic() - started, servo_hz=cycles * control_hz, speed=config.speed,
        episode_success=outcomes, episode_steps=lengths,
    )
