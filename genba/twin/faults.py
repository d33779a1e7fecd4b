"""Faults injected on the controller side of the link: added latency, jitter and lost replies."""

from __future__ import annotations

import time

import numpy as np

from bridge.client import BridgeClient, StepResult
from genba.twin.config import Faults


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
