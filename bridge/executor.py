"""The controller-side chunk executor: one action per control period from a queue of future actions.

``ChunkExecutor.tick(observation)`` is called once per control period. It merges the chunks that
arrived, asks for the next chunk when the queue (bridge.chunks.ChunkQueue) says it is due, and
returns the action for this period, or None when the queue ran dry (the caller holds, as for a
missed reply). Requests do not block: the reply is collected by a later ``tick`` or by ``wait``,
which a control loop calls instead of sleeping to the next period so a chunk is merged when it
comes. Every returned action still goes through the caller's servo pipeline and safety filter,
one setpoint at a time, exactly like a single action.

The link is a ``BridgeClient`` or anything with its ``send_chunk_request``/``poll_chunks`` (the
twin's fault injection wraps one). The round trip the queue times runs from the observation (the
request's ``obs_t_ns``) to the chunk's merge, so delays anywhere on the way count.

Imports numpy only (and bridge.chunks).
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

import numpy as np

from bridge.chunks import ChunkQueue, ChunkQueueConfig


class ChunkLink(Protocol):
    def send_chunk_request(self, observation: np.ndarray, obs_t_ns: int, deadline_s: float, max_actions: int,
                           images: dict[str, np.ndarray] | None = None) -> int | None: ...

    def poll_chunks(self, timeout_s: float) -> list: ...


class ChunkExecutor:
    def __init__(self, link: ChunkLink, config: ChunkQueueConfig, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.link = link
        self.queue = ChunkQueue(config)
        self.clock = clock
        # The server may drop a request it cannot start before the stale limit: its chunk would be refused here.
        self._deadline_s = config.stale_ns / 1e9
        self.obs_ages_us: list[float] = []  # the server's view of each merged chunk's observation age

    def tick(self, observation: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
        """The action for the control period starting now (None: the queue is dry; hold).

        images: a pixel bundle's camera frames taken with the observation (sent only with a request).
        """
        self._merge(self.link.poll_chunks(0.0))
        now = self.clock()
        queue = self.queue
        if queue.request_due(now):
            args = (observation, now, self._deadline_s, queue.config.chunk_length)
            # Frames only when there are some: a link for state bundles need not take them.
            seq = self.link.send_chunk_request(*args) if images is None else self.link.send_chunk_request(*args, images)
            if seq is not None:
                queue.requested(now)
        return queue.take(now)

    def wait(self, until_ns: int) -> None:
        """Merge chunks as they arrive until until_ns (the next control period): a loop's sleep."""
        while True:
            remaining = until_ns - self.clock()
            if remaining <= 0:
                return
            self._merge(self.link.poll_chunks(remaining / 1e9))

    def reset(self) -> None:
        """A new episode: nothing queued carries over (replies to old requests are refused as old or stale)."""
        self.queue.clear(self.clock())

    def _merge(self, replies: list) -> None:
        for reply in replies:
            # The request left with its observation (start_ns); timing from there includes every delay.
            if self.queue.merge(reply.actions, reply.start_ns, self.clock(), sent_ns=reply.start_ns):
                self.obs_ages_us.append(reply.obs_age_us)

    def summary(self) -> dict:
        ages = self.obs_ages_us
        return {**self.queue.summary(), "server_obs_age_us_mean": float(np.mean(ages)) if ages else None}
