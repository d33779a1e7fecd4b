"""The twin's run: episodes of a PyBullet cell driven through the bridge, as a robot controller would be.

Each control period (paced by the wall clock, ``speed`` times real time) the twin observes the
cell, asks the server for an action through ``BridgeClient`` (optionally through injected faults:
added latency, jitter, dropped replies), and turns it into tool-target setpoints at ``servo_hz``
through the controller's own servo pipeline (bridge.servo.ServoPipeline: interpolation, the
watchdog that holds after 2 servo cycles without a fresh setpoint, and the SafetyFilter with the
tool workspace box, per-axis speed and acceleration, tool speed and the reduced-speed mode).
The cell takes one command per control period, so it is driven to the last applied setpoint of
each period; when the safety layer changed nothing, the env gets the policy's action bit for
bit, so with no faults the twin reproduces ``genba eval`` episode by episode.

With ``obs_mode="perceived"`` (``--obs perceived``) the twin observes the cell as a real cell PC does: it
renders its perception camera and runs perception.localize and perception.observers on the controller
side, and sends the perceived state; the bundle the server serves is the state bundle, unchanged.
With ``obs_mode="pixels"`` (``--obs pixels``) it sends the robot's readings as the vector and each rendered
camera image (the env's pixel observation) as a camera frame of the step, in the encoding agreed at hello
(``image_encodings``), to a pixel bundle.

The twin needs no bundle file: it describes its cell (bridge.spec.spec_hash of the cell's
feature_spec()) in its hello, and the server picks the bundle trained for it, or refuses.
Episodes use the same seeds as ``genba eval`` (policies.evaluate.EVAL_SEED_OFFSET + seed + i).
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import asdict

import numpy as np

import sim
from bridge.chunks import ChunkQueueConfig
from bridge.client import BridgeClient, ClientConfig, HandshakeRejected, StepResult
from bridge.endpoints import is_loopback_host
from bridge.executor import ChunkExecutor
from bridge.safety import SafetyFilter
from bridge.servo import ServoPipeline
from bridge.spec import spec_hash
from bridge.watchdog import Watchdog
from genba.twin.config import TwinConfig, TwinError
from genba.twin.faults import FaultyChunkLink, FaultyLink
from genba.twin.live_page import LivePage
from genba.twin.report import TwinReport
from genba.twin.tool_limits import tool_target_limits, tool_xyz
from policies.evaluate import EVAL_SEED_OFFSET, wilson_interval
from policies.features import flatten_obs
from policies.policy import replan_after


def run_twin(config: TwinConfig, log=print) -> TwinReport:
    """Run the episodes and return the report (the server must already be serving a bundle for this cell)."""
    with ExitStack() as stack:
        env = sim.make_env(config.scenario, robot=config.robot, render_mode="rgb_array" if config.web else None,
                           obs_mode=config.obs_mode, randomization=config.randomization, play=config.play,
                           observe_command=config.observe_command)
        stack.callback(env.close)
        spec = env.unwrapped.feature_spec()
        if spec["action"]["kind"] != "ee_delta":
            raise TwinError(f"the twin drives ee_delta cells; {config.scenario} uses {spec['action']['kind']!r} actions")
        control_hz = float(spec["control_hz"])
        if not config.servo_hz >= control_hz:
            raise TwinError(f"--servo-hz {config.servo_hz:g} must be at least the control rate {control_hz:g} Hz")
        robot = spec["robot"]
        client = BridgeClient(ClientConfig(
            config.endpoint, config.bundle, spec_hash(spec["observation"], spec["action"], control_hz),
            robot={"model": robot["model"], "joint_names": robot["joint_names"]}, name=f"twin-{config.scenario}",
            keys=config.keys, image_encodings=config.image_encodings,
        ))
        stack.callback(client.close)
        try:
            welcome = client.connect(10.0)
        except HandshakeRejected as exc:
            # What the twin sent is set by its flags: name them (conveyor-pick's pixel preset trains on the GP7, the cell has a Panda).
            hint = f" (the twin sends the {config.obs_mode} observation of its {robot['model']}; --robot and --obs choose them" + \
                ("" if config.observe_command else ", and a bundle trained with observe_command needs --observe-command") + ")"
            raise TwinError(f"{config.endpoint} serves no bundle for {config.scenario} with the {robot['model']}: "
                            f"{exc}{hint}") from None
        page = None
        if config.web is not None:
            from genba.viewer.live import LiveView  # aiohttp: only when the page is asked for

            web = config.web
            view = stack.enter_context(LiveView(web.host, web.port, web.fps, f"twin {config.scenario} ({welcome.bundle})"))
            page = LivePage(view, env, {"scenario": config.scenario, "driver": f"bridge {welcome.bundle}"})
            if not is_loopback_host(web.host):
                log(f"warning: the live view listens on {web.host}: anyone on that network can pause and reset the twin")
            log(f"live view: {view.url}")
        executor = _chunk_executor(config, client, welcome, float(spec["control_hz"]))
        if executor is not None:
            log(f"chunks: {welcome.chunk} actions per request from {welcome.bundle}, executed from a queue "
                f"(re-observing after {executor.queue.config.replan_after}, stale after "
                f"{executor.queue.config.stale_ns / 1e6:g} ms)")
        return _episodes(config, env, spec, FaultyLink(client, config.faults), client, welcome.bundle, log, page, executor)


def _chunk_executor(config: TwinConfig, client: BridgeClient, welcome, control_hz: float) -> ChunkExecutor | None:
    """The chunk executor for a bundle that gives chunks (or when asked: --chunks), else None (one action a period)."""
    use = welcome.chunk > 1 if config.chunks is None else config.chunks
    if not use:
        return None
    if config.speed <= 0:
        raise TwinError("chunks are executed on the wall clock: run the twin paced (--speed > 0)")
    period_ns = int(1e9 / control_hz / config.speed)
    queue = ChunkQueueConfig(
        period_ns, welcome.chunk, max_age_ns=None if config.max_age_ms is None else int(config.max_age_ms * 1e6 / config.speed),
        blend=config.blend, replan_after=config.replan_after or replan_after(welcome.chunk))
    return ChunkExecutor(FaultyChunkLink(client, config.faults), queue)


def _episodes(config: TwinConfig, env, spec: dict, link: FaultyLink, client: BridgeClient, bundle_name: str, log,
              page: LivePage | None, executor: ChunkExecutor | None = None) -> TwinReport:
    control_hz = float(spec["control_hz"])
    scales = {f["name"]: f.get("scale") for f in spec["action"]["features"]}
    pos_scale, yaw_scale = float(scales["tool_delta_position"]), float(scales["tool_delta_yaw"])
    scale = np.array([pos_scale] * 3 + [yaw_scale])
    cycles = max(1, int(round(config.servo_hz / control_hz)))  # whole servo cycles per control period
    limits = tool_target_limits(spec["robot"], yaw_scale * control_hz, cycles * control_hz, config.max_tool_accel)
    layout = spec["observation"]["layout"]  # the order a Dict observation is flattened in
    image_keys = [i["key"] for i in spec["observation"].get("images", [])]  # pixels: sent as frames, not in the vector
    if image_keys:
        layout = [k for k in layout if k not in image_keys]
    period_s = 1.0 / control_hz
    wall_period = period_s / config.speed if config.speed > 0 else 0.0
    budget_s = period_s * config.latency_budget / (config.speed if config.speed > 0 else 1.0)
    step_ns = int(period_s * 1e9) // cycles
    robot = env.unwrapped.robot
    successes, cycle_times, steps_total, overruns, steps_changed, steps_without_action = 0, [], 0, 0, 0, 0
    outcomes: list[bool] = []
    lengths: list[int] = []
    returns: list[float] = []
    status: dict[str, int] = {}
    safety_total: dict[str, int] = {}
    holds = 0
    started = time.monotonic()
    interrupted = False
    try:
        for episode in range(config.episodes):
            obs, info = env.reset(seed=EVAL_SEED_OFFSET + config.seed + episode)
            client.reset(1.0, episode=episode)
            if executor is not None:
                executor.reset()
            safety = SafetyFilter(limits, period_s / cycles, np.array([*robot.target_pos, robot.target_yaw]), tool_xyz)
            if config.reduced_speed:
                safety.set_reduced_speed(True)
            servo = ServoPipeline(safety, Watchdog(hold_after=2, drop_after_s=1.0))
            grip, done, sim_ns, steps = -1.0, False, 0, 0
            reward, ret, env_action, result = 0.0, 0.0, None, None

            def publish() -> None:
                counts = {k: safety_total.get(k, 0) + v for k, v in safety.report().items()}
                page.publish((episode, steps), page.status(
                    episode=episode, step=steps, reward=reward, ret=ret, info=info, action=env_action, robot=robot,
                    client=client, result=result, safety_counts=counts, holds=holds + servo.holds, step_status=status))

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
                    if now < tick and executor is not None:
                        executor.wait(int(tick * 1e9))  # the loop's sleep: chunks are merged as they arrive
                    elif now < tick:
                        time.sleep(tick - now)
                    elif now - tick > wall_period:
                        overruns += 1
                        tick = now
                images = {k: obs[k] for k in image_keys} if image_keys else None
                if executor is None:
                    result = link.step(flatten_obs(obs, layout), budget_s, images)
                else:  # an action from the queue (through the servo pipeline and safety filter below), or none: hold
                    queued = executor.tick(flatten_obs(obs, layout), images)
                    result = StepResult("queue" if queued is not None else "dry", queued, 0)
                status[result.status] = status.get(result.status, 0) + 1
                current = np.array([*robot.target_pos, robot.target_yaw])
                measured = np.array([*robot.tool_pos, robot.tool_yaw])
                safety.q = current  # the cell's own target is the truth (it clips to its workspace too)
                action = None
                if result.action is not None:
                    action = np.asarray(result.action, dtype=np.float64)
                    grip = float(np.clip(action[4], -1.0, 1.0)) if math.isfinite(action[4]) else grip
                    servo.feed(current + action[:4] * scale, sim_ns, sim_ns + cycles * step_ns)
                changed = False
                for i in range(1, cycles + 1):
                    servo.cycle(sim_ns + i * step_ns, measured)
                    changed |= servo.changed
                if action is not None and not changed:
                    env_action = action  # bit for bit what the policy said
                else:
                    env_action = np.append(np.clip((safety.q - current) / scale, -1.0, 1.0), grip)
                    steps_changed += 1
                    steps_without_action += action is None
                obs, reward, terminated, truncated, info = env.step(env_action.astype(np.float32))
                done = terminated or truncated
                sim_ns += cycles * step_ns
                steps += 1
                ret += float(reward)
                if page is not None:
                    publish()
                tick += wall_period
            steps_total += steps
            holds += servo.holds
            for kind, count in safety.report().items():
                safety_total[kind] = safety_total.get(kind, 0) + count
            success = bool(info.get("is_success", False))
            successes += success
            outcomes.append(success)
            lengths.append(steps)
            returns.append(ret)
            if success:
                cycle_times.append(float(info.get("cycle_time", steps / control_hz)))
            log(f"episode {episode}: {'success' if success else 'failure'} after {steps} steps")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finished episodes are the report; the cut one is left out
        interrupted = True
    n = len(outcomes)
    return TwinReport(
        scenario=config.scenario, bundle=bundle_name, episodes=n, successes=successes,
        success_rate=successes / n if n else 0.0, success_ci95=wilson_interval(successes, n),
        mean_cycle_time_s=float(np.mean(cycle_times)) if cycle_times else None, control_steps=steps_total,
        round_trip=client.stats.summary(), deadline_misses=client.stats.deadline_misses, step_status=status,
        safety_interventions=safety_total, steps_changed_by_safety=steps_changed, steps_without_action=steps_without_action,
        holds=holds,
        faults={**asdict(config.faults), "dropped": (executor.link if executor else link).dropped,
                "added_latency_ms_total": round((executor.link if executor else link).delayed_ms, 1)},
        chunks=executor.summary() if executor is not None else None,
        overruns=overruns, wall_s=time.monotonic() - started, servo_hz=cycles * control_hz, speed=config.speed,
        episode_success=outcomes, episode_steps=lengths, episode_returns=returns, interrupted=interrupted,
    )
