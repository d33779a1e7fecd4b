"""The viewer's sim loop: step an env with a policy (or expert), feed a recorder and/or a LiveView, obey pause/step/reset.

Rendering is the expensive part (PyBullet's CPU renderer takes tens of ms per frame), so frames are
made only when something consumes them: every `record_every` steps for a recorder, and for the live
view only while someone watches, at most at its fps cap, and only when the scene changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from genba.viewer.live import Controls, LiveView
from policies.policy import Policy
from sim.camera import render
from sim.video import VideoRecorder

PAUSED_POLL_S = 0.02  # how often a paused loop looks for new requests
MAX_LAG_S = 0.25  # a paced loop further behind than this drops the debt instead of rushing to catch up


@dataclass
class LoopOptions:
    episodes: Optional[int] = 1
    """Episodes to run; None runs until stopped (Ctrl-C)."""
    seconds: Optional[float] = None
    """Stop after this much simulated time in total (None: no limit)."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    speed: float = 1.0
    """Real-time factor for pacing; 0 runs as fast as the CPU allows."""
    record_every: int = 1
    """Record a frame every this many control steps."""


@dataclass
class LoopSummary:
    episodes: int = 0
    successes: int = 0
    steps: int = 0
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    frames_recorded: int = 0
    frames_streamed: int = 0
    returns: list[float] = field(default_factory=list)
    stopped_by_user: bool = False

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "successes": self.successes, "steps": self.steps,
                "sim_time_s": round(self.sim_time_s, 4), "wall_s": round(self.wall_s, 4),
                "steps_per_s": round(self.steps_per_s, 1), "frames_recorded": self.frames_recorded,
                "frames_streamed": self.frames_streamed, "returns": [round(r, 4) for r in self.returns],
                "stopped_by_user": self.stopped_by_user}


class ViewLoop:
    """`decorate`, if given, turns each rendered frame into the one shown and recorded (e.g. an overlay); it
    is called once per frame, right after the render, while the scene is as the frame shows it."""

    def __init__(self, env, policy: Policy, camera=None, *, options: LoopOptions | None = None,
                 view: LiveView | None = None, recorder: VideoRecorder | None = None, labels: dict[str, Any] | None = None,
                 decorate: Callable[[np.ndarray], np.ndarray] | None = None,
                 on_episode: Callable[[int, bool], None] | None = None):
        self.env, self.policy, self.camera, self.decorate = env, policy, camera, decorate
        self.on_episode = on_episode  # (episodes finished, this one's success): a headless recording's progress
        self.opt = options or LoopOptions()
        self.view, self.recorder = view, recorder
        self.labels = labels or {}  # constant status fields (scenario, policy) shown on the page
        base = env.unwrapped
        self.dt = float(base.scenario.physics.control_period) if hasattr(base, "scenario") else 1.0 / 20.0
        self._robot = getattr(base, "robot", None)
        self.summary = LoopSummary()
        self._episode = -1
        self._reward = 0.0
        self._return = 0.0
        self._step = 0
        self._action: Optional[np.ndarray] = None
        self._info: dict[str, Any] = {}
        self._done = False
        self._rendered_key: tuple[int, int] | None = None
        self._published_key: tuple[int, int] | None = None
        self._recorded: tuple[tuple[int, int], np.ndarray] | None = None  # reused by the live view
        self._rate = _Rate()

    # --- one episode at a time ------------------------------------------------------------------
    def _reset(self):
        self._episode += 1
        obs, self._info = self.env.reset(seed=self.opt.seed + self._episode)
        self._done = False
        self.policy.reset()
        self._step, self._reward, self._return, self._action = 0, 0.0, 0.0, None
        return obs

    def _finish_episode(self) -> None:
        success = bool(self._info.get("is_success", False))
        self.summary.episodes += 1
        self.summary.successes += success
        self.summary.returns.append(self._return)
        if self.on_episode is not None:
            self.on_episode(self.summary.episodes, success)

    def run(self) -> LoopSummary:
        """Run until the episodes or seconds are done, or Ctrl-C (which ends the run cleanly)."""
        t0 = time.monotonic()
        deadline = time.monotonic()
        period = self.dt / self.opt.speed if self.opt.speed > 0 else 0.0
        obs = self._reset()
        self._publish()
        try:
            while True:
                controls = self.view.poll() if self.view is not None else Controls()
                if controls.reset:
                    if self._step:
                        self._finish_episode()
                    obs = self._reset()
                if controls.paused and not controls.step:
                    self._publish()
                    time.sleep(PAUSED_POLL_S)
                    deadline = time.monotonic()
                    continue
                obs = self._step_once(obs)
                if self._done:
                    self._finish_episode()
                    if self.opt.episodes is not None and self.summary.episodes >= self.opt.episodes:
                        break
                    obs = self._reset()
                if self.opt.seconds is not None and self.summary.sim_time_s >= self.opt.seconds - 1e-9:
                    break
                if period:
                    deadline = _pace(deadline, period)
        except KeyboardInterrupt:
            self.summary.stopped_by_user = True
        except Exception:
            if not _gui_closed(self.env):
                raise
            self.summary.stopped_by_user = True  # the PyBullet window was closed: a normal way to stop
        finally:
            self.summary.wall_s = time.monotonic() - t0
        return self.summary

    def _step_once(self, obs):
        action = np.asarray(self.policy.act(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._info, self._done = info, bool(terminated or truncated)
        self._action, self._reward = action, float(reward)
        self._return += self._reward
        self._step += 1
        self.summary.steps += 1
        self.summary.sim_time_s += self.dt
        self._rate.tick()
        if self.recorder is not None and self.summary.steps % self.opt.record_every == 0:
            frame = self._render()
            self.recorder.add(frame)
            self.summary.frames_recorded += 1
            self._recorded = ((self._episode, self._step), frame)
        self._publish()
        return obs

    # --- live view ------------------------------------------------------------------------------
    def _publish(self) -> None:
        if self.view is None:
            return
        key = (self._episode, self._step)
        frame = None
        if self.view.wants_frame(changed=key != self._rendered_key):
            recorded = self._recorded
            frame = recorded[1] if recorded is not None and recorded[0] == key else self._render()
            self._rendered_key = key
            self.summary.frames_streamed += 1
        # A paused loop publishes every few ms; only a new step is worth a new status message.
        status = self.status() if key != self._published_key else None
        self._published_key = key
        if frame is not None or status is not None:
            self.view.push(frame, status)

    def _render(self) -> np.ndarray:
        frame = render(self.env, self.camera)
        return frame if self.decorate is None else self.decorate(frame)

    def status(self) -> dict[str, Any]:
        """What the page shows: the core fields, the info scalars, joints and the latest action."""
        status: dict[str, Any] = dict(self.labels)
        status.update(episode=self._episode + 1, step=self._step, sim_time=round(self._step * self.dt, 3),
                      reward=self._reward, **{"return": self._return},
                      success=bool(self._info.get("is_success", False)), steps_per_s=round(self._rate.value, 1))
        for key, value in self._info.items():
            if key != "is_success" and isinstance(value, (bool, int, float, np.generic)):
                status[key] = value
        if self._robot is not None:
            status["joint_positions"] = self._robot.joint_positions()
        if self._action is not None:
            status["action"] = self._action
        return status


def _gui_closed(env) -> bool:
    sim = getattr(env.unwrapped, "sim", None)
    if sim is None or not getattr(sim, "gui", False):
        return False
    import pybullet as pb

    return not pb.isConnected(physicsClientId=sim.cid)


def _pace(deadline: float, period: float) -> float:
    """Sleep until the next step is due on a monotonic clock; returns the next deadline."""
    deadline += period
    now = time.monotonic()
    if deadline > now:
        time.sleep(deadline - now)
    elif now - deadline > MAX_LAG_S:
        deadline = now  # rendering or a slow policy fell behind: resume real time from here
    return deadline


class _Rate:
    """Steps per second over the last second or so (what the page shows as steps_per_s)."""

    def __init__(self, window_s: float = 1.0):
        self.window_s, self.value = window_s, 0.0
        self._t0, self._n = time.monotonic(), 0

    def tick(self) -> None:
        self._n += 1
        now = time.monotonic()
        if now - self._t0 >= self.window_s:
            self.value = self._n / (now - self._t0)
            self._t0, self._n = now, 0


def record_every_for(control_hz: float, fps: Optional[float], max_fps: float = 30.0) -> tuple[int, float]:
    """Steps between recorded frames and the resulting video fps: a whole number of steps per frame,
    so frames are evenly spaced in sim time (15 fps from a 20 Hz loop would stutter)."""
    wanted = fps if fps is not None else min(control_hz, max_fps)
    every = max(1, round(control_hz / wanted))
    return every, control_hz / every
