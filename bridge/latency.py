"""Round-trip latency statistics: preallocated sample buffer, percentiles, deadline misses."""

from __future__ import annotations

from array import array

import numpy as np


class LatencyStats:
    """Keeps the last ``capacity`` round trips (ns) plus exact counts and the all-time maximum."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        # array.array, not numpy: record() runs once per request, and storing into it costs a
        # fraction of a numpy item assignment. samples_ns() reads it as numpy.
        self._samples = array("q", bytes(8 * capacity))
        self._next = 0
        self.count = 0  # replies received in time
        self.deadline_misses = 0  # requests that got no usable reply before their deadline
        self.max_ns = 0

    def record(self, rtt_ns: int) -> None:
        self._samples[self._next] = rtt_ns
        self._next = (self._next + 1) % len(self._samples)
        self.count += 1
        if rtt_ns > self.max_ns:
            self.max_ns = rtt_ns

    def miss(self) -> None:
        self.deadline_misses += 1

    def samples_ns(self) -> np.ndarray:
        """The retained samples, oldest first."""
        samples = np.frombuffer(self._samples, dtype=np.int64)
        if self.count <= samples.shape[0]:
            return samples[: self.count].copy()
        return np.concatenate([samples[self._next :], samples[: self._next]])

    def summary(self) -> dict[str, float | int]:
        """p50/p99/p99.9/max in microseconds plus counts; percentiles are NaN with no samples."""
        samples = self.samples_ns()
        total = self.count + self.deadline_misses
        if samples.size:
            p50, p99, p999 = np.percentile(samples, [50.0, 99.0, 99.9]) / 1e3
        else:
            p50 = p99 = p999 = float("nan")
        return {
            "count": self.count,
            "p50_us": float(p50),
            "p99_us": float(p99),
            "p999_us": float(p999),
            "max_us": self.max_ns / 1e3 if samples.size else float("nan"),
            "deadline_misses": self.deadline_misses,
            "miss_rate": self.deadline_misses / total if total else 0.0,
        }
