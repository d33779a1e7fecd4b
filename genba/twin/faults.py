"""Faults injected on the controller side of the link: fixed and random delay, jitter, lost replies (in bursts).

Each request is delayed by latency_ms + uniform [0, jitter_ms) + exponential with mean
random_delay_ms (a heavy-ish tail: most requests quick, a few slow), before it is sent. Replies are
lost at the long-run rate drop_rate; with loss_burst > 1 losses come in bursts of that mean length
(a two-state Gilbert channel: a lost reply makes the next one likelier lost), as a congested or
flapping link loses them.

``FaultyLink`` wraps the single-action ``step`` (it waits out the delay: the controller's deadline
pays for it). ``FaultyChunkLink`` wraps the chunk requests of bridge.executor without blocking:
a delayed request waits in a delay line and goes out when due, while the control loop runs on.
"""

from __future__ import annotations

import time

import numpy as np

from bridge.client import BridgeClient, ChunkReply, StepResult
from genba.twin.config import Faults


class LossChannel:
    """Decides, reply by reply, whether it is lost: i.i.d. at drop_rate, or in bursts of mean length loss_burst."""

    def __init__(self, drop_rate: float, loss_burst: float, rng: np.random.Generator) -> None:
        self.rng, self.drop_rate = rng, drop_rate
        # Gilbert: stay lost with 1 - 1/burst; from a kept reply, lose the next with the rate that makes
        # the stationary loss fraction drop_rate.
        self.p_recover = 1.0 / max(1.0, loss_burst)
        self.p_lose = drop_rate * self.p_recover / (1.0 - drop_rate) if drop_rate < 1.0 else 1.0
        self.bursty = loss_burst > 1.0
        self.lost_last = False

    def lose(self) -> bool:
        if not self.drop_rate:
            return False
        if not self.bursty:
            return bool(self.rng.random() < self.drop_rate)
        p = 1.0 - self.p_recover if self.lost_last else self.p_lose
        self.lost_last = bool(self.rng.random() < p)
        return self.lost_last


class _Faults:
    def __init__(self, client: BridgeClient, faults: Faults) -> None:
        self.client, self.faults = client, faults
        self.rng = np.random.default_rng(faults.seed)
        self.loss = LossChannel(faults.drop_rate, faults.loss_burst, self.rng)
        self.dropped = 0
        self.delayed_ms = 0.0

    def delay_s(self) -> float:
        f = self.faults
        ms = f.latency_ms + (self.rng.uniform(0.0, f.jitter_ms) if f.jitter_ms else 0.0)
        ms += self.rng.exponential(f.random_delay_ms) if f.random_delay_ms else 0.0
        self.delayed_ms += ms
        return ms / 1e3


class FaultyLink(_Faults):
    """Wraps a client's step with injected delay and lost replies (controller side)."""

    def step(self, obs: np.ndarray, deadline_s: float, images: dict[str, np.ndarray] | None = None) -> StepResult:
        delay = self.delay_s()
        if delay:
            time.sleep(min(delay, max(deadline_s, 0.0)))
        if deadline_s - delay <= 0:  # the injected delay alone used up the budget: nothing is sent
            self.client.stats.miss()
            return StepResult("deadline", None, 0)
        result = self.client.step(obs, deadline_s - delay, images)
        if result.status == "ok" and self.loss.lose():
            self.dropped += 1
            return result._replace(status="dropped", action=None)
        return result


class FaultyChunkLink(_Faults):
    """The chunk requests of a BridgeClient through a delay line and a loss channel, never blocking the caller."""

    def __init__(self, client: BridgeClient, faults: Faults) -> None:
        super().__init__(client, faults)
        self._line: list[tuple] = []  # (due_ns, obs, obs_t_ns, deadline_s, n, images)
        self._ids = 0

    def send_chunk_request(self, observation: np.ndarray, obs_t_ns: int, deadline_s: float, max_actions: int,
                           images: dict[str, np.ndarray] | None = None) -> int | None:
        delay = self.delay_s()
        self._line.append((time.monotonic_ns() + int(delay * 1e9), np.array(observation, np.float32), obs_t_ns,
                           deadline_s - delay, max_actions, images))
        self._send_due()
        self._ids += 1
        return self._ids

    def poll_chunks(self, timeout_s: float) -> list[ChunkReply]:
        end = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            self._send_due()
            now = time.monotonic_ns()
            wake = min([end] + [due for due, *_ in self._line])
            replies = [r for r in self.client.poll_chunks(max(0.0, (wake - now) / 1e9)) if not self._lost()]
            if replies or time.monotonic_ns() >= end:
                return replies

    def _lost(self) -> bool:
        if self.loss.lose():
            self.dropped += 1
            return True
        return False

    def _send_due(self) -> None:
        now = time.monotonic_ns()
        while self._line and self._line[0][0] <= now:
            _, obs, obs_t_ns, deadline_s, n, images = self._line.pop(0)
            if deadline_s > 0:  # the delay alone used up the budget: nothing is sent (the queue counts it lost)
                self.client.send_chunk_request(obs, obs_t_ns, deadline_s, n, images)
