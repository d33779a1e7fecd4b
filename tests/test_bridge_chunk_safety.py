"""The safety layer acts on every setpoint a chunk executor gives, and a stale chunk is never executed.

The gantry's real limits, filter and servo pipeline, fed by the ChunkExecutor one action per control
period as a controller feeds them; the chunks come from a link on a fake clock, so each test knows
exactly what arrives when (a server is not needed to send a bad chunk: the controller must not trust one).
"""

from __future__ import annotations

import numpy as np

from bridge import gantry
from bridge.chunks import ChunkQueueConfig
from bridge.executor import ChunkExecutor
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter
from bridge.servo import ServoPipeline
from bridge.watchdog import Watchdog

P = 50_000_000  # the gantry's 20 Hz control period, ns
CYCLES = 10  # servo cycles per control period (200 Hz)
DT = P // CYCLES


class OneChunkLink:
    """Answers the first request with `actions`, observed `age_ns` before it was asked for; later ones never."""

    def __init__(self, now: list[int], actions: np.ndarray, age_ns: int = 0) -> None:
        self.now, self.actions, self.age_ns = now, actions, age_ns
        self.pending: list[int] = []
        self.requests = 0

    def send_chunk_request(self, observation, obs_t_ns, deadline_s, max_actions):
        self.requests += 1
        if self.requests == 1:
            self.pending.append(obs_t_ns - self.age_ns)
        return self.requests

    def poll_chunks(self, timeout_s):
        self.now[0] += int(timeout_s * 1e9)
        replies, self.pending = [Reply(self.actions, start) for start in self.pending], []
        return replies


class Reply:
    def __init__(self, actions, start_ns) -> None:
        self.actions, self.start_ns, self.obs_age_us = actions, start_ns, 0.0


def drive(actions: np.ndarray, q0, periods: int, age_ns: int = 0, max_age_ns: int | None = None):
    """Run the executor + servo pipeline for `periods`; returns (servo commands, safety filter, executor, targets fed)."""
    now = [0]
    executor = ChunkExecutor(OneChunkLink(now, actions, age_ns), ChunkQueueConfig(P, len(actions), max_age_ns=max_age_ns),
                             clock=lambda: now[0])
    safety = SafetyFilter(SafetyLimits.from_robot_spec(gantry.robot_spec()), DT / 1e9, np.array(q0, dtype=float),
                          gantry.forward_kinematics_floats)
    servo = ServoPipeline(safety, Watchdog(hold_after=2, drop_after_s=10.0))
    commands, fed = [safety.q.copy()], []
    for k in range(periods):
        now[0] = k * P
        action = executor.tick(np.zeros(gantry.OBS_DIM, np.float32))
        if action is not None:  # the controller's mapping: a joint delta per period, from the last applied command
            target = safety.q + np.asarray(action) * gantry.action_scale()
            fed.append(target)
            servo.feed(target, k * P, (k + 1) * P)
        for i in range(1, CYCLES + 1):
            commands.append(servo.cycle(k * P + i * DT))
    return np.array(commands), safety, executor, fed


def test_a_chunk_that_would_exceed_velocity_and_leave_the_workspace_is_clamped_action_by_action():
    # Three times full speed along x, from 0.1 m inside the tool box's +x face: 6 periods would carry the
    # tool 0.45 m, far out of the box, at 1.5 m/s where the axis allows 0.5 m/s.
    chunk = np.tile([3.0, 0.0, 0.0], (6, 1))
    q0 = [0.3, 0.0, 0.3]
    commands, safety, executor, fed = drive(chunk, q0, periods=7)
    # Every action still due when it arrived (one period after the observation: rows 1-5) was executed ...
    assert executor.queue.counts["served"] == 5
    assert np.array(fed)[:, 0].max() > gantry.WORKSPACE_HIGH[0]  # ... the setpoints fed asked to leave the box
    report = safety.report()
    assert report["velocity"] > 0 and report["workspace"] > 0  # ... and the filter cut them down
    step = np.abs(np.diff(commands, axis=0))
    assert np.all(step <= gantry.JOINT_MAX_VELOCITY * DT / 1e9 * (1 + 1e-9))  # every servo command within speed
    tool = commands + gantry.TOOL_OFFSET
    assert np.all(tool <= gantry.WORKSPACE_HIGH + 1e-9) and np.all(tool >= gantry.WORKSPACE_LOW - 1e-9)  # and box
    assert np.isclose(commands[-1, 0], gantry.WORKSPACE_HIGH[0] - gantry.TOOL_OFFSET[0])  # it stopped at the face


def test_a_stale_chunk_is_never_executed_and_the_robot_holds():
    chunk = np.tile([1.0, 0.0, 0.0], (6, 1))
    q0 = [0.0, 0.0, 0.3]
    # The observation behind it is 400 ms old when it arrives; the stale limit is 300 ms.
    commands, safety, executor, fed = drive(chunk, q0, periods=6, age_ns=400_000_000, max_age_ns=300_000_000)
    assert fed == [] and executor.queue.counts["served"] == 0 and executor.queue.counts["stale_chunks"] == 1
    assert np.all(commands == np.array(q0))  # no motion at all: held where it stood


def test_a_fresh_chunk_from_the_same_link_moves_the_robot():
    # The same chunk, 100 ms old on arrival: within the limit, so it runs (the refusal above is about age alone).
    chunk = np.tile([1.0, 0.0, 0.0], (6, 1))
    commands, safety, executor, fed = drive(chunk, [0.0, 0.0, 0.3], periods=6, age_ns=100_000_000, max_age_ns=300_000_000)
    assert executor.queue.counts["served"] > 0 and commands[-1, 0] > 0.05
