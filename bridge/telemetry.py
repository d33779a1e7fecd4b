"""Server telemetry: counters and latency samples gathered by both server threads, published on PUB.

Per-request numbers go into preallocated arrays under a lock (cheap, no allocation on the hot
path); the I/O thread swaps the window out every ``period`` and publishes one summary. Events
(errors, safety interventions, sessions) are published as they happen. Topics: ``latency``,
``actions``, ``error``, ``safety``, ``session``; each message is [topic, msgpack map].
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import Counter
from typing import Any

import msgpack
import numpy as np
import zmq

TOPICS = ("latency", "actions", "error", "safety", "session")


class ServerStats:
    def __init__(self, capacity: int = 1 << 16) -> None:
        self._lock = threading.Lock()
        # array.array, not numpy: storing one number costs ~40 ns instead of ~150 (read as numpy in swap)
        self._server_us = array("d", bytes(8 * capacity))  # receive -> reply handed to the I/O thread
        self._infer_us = array("d", bytes(8 * capacity))
        self._batch = array("i", bytes(4 * capacity))
        self._n = 0
        self._counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # never reset: served, errors.<NAME>, dropped_replies, ...

    def served(self, server_us: float, infer_us: float, batch: int) -> None:
        with self._lock:
            i = self._n
            if i < len(self._server_us):
                self._server_us[i] = server_us
                self._infer_us[i] = infer_us
                self._batch[i] = batch
                self._n = i + 1
            self._counts["served"] += 1

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def swap(self) -> dict[str, Any]:
        """Summary of the window since the last swap, then start a new window."""
        with self._lock:
            n = self._n
            server_us = np.frombuffer(self._server_us, dtype=np.float64, count=n).copy()
            infer_us = np.frombuffer(self._infer_us, dtype=np.float64, count=n).copy()
            batch = np.frombuffer(self._batch, dtype=np.intc, count=n).copy()
            counts = self._counts
            self._counts = Counter()
            self._n = 0
            self.totals.update(counts)
        summary: dict[str, Any] = {"counts": dict(counts), "samples": n}
        if n:
            p = np.percentile(server_us, [50, 99])
            summary.update(
                server_p50_us=float(p[0]),
                server_p99_us=float(p[1]),
                server_max_us=float(server_us.max()),
                infer_p50_us=float(np.median(infer_us)),
                batch_mean=float(batch.mean()),
                batch_max=int(batch.max()),
            )
        return summary


class TelemetryPublisher:
    """Owns the PUB socket; used from the server's I/O thread only."""

    def __init__(self, socket: zmq.Socket | None) -> None:
        self.socket = socket

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.socket is None:
            return
        payload = {"t_ns": time.monotonic_ns(), **payload}
        try:
            self.socket.send_multipart([topic.encode(), msgpack.packb(payload, default=_plain)], zmq.NOBLOCK)
        except zmq.Again:  # a slow subscriber must never stall serving
            pass


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot publish {type(value).__name__}")
