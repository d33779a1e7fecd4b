"""The twin on the viewer's live page: the cell's camera and status, plus round trips and safety counters."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from bridge.client import BridgeClient, StepResult

PAUSED_POLL_S = 0.02  # how often a paused twin looks for the viewer's requests
PAUSED_HEARTBEAT_S = 1.0  # a paused twin still tells the server it is alive (sessions expire after 10 s)


class LivePage:
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
