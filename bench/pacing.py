"""The benches' control loops: a call on every tick of a fixed period, on the wall clock."""

from __future__ import annotations

import time
from typing import Callable


def paced(period_ns: int, start_ns: int, end_ns: int, once: Callable[[], object]) -> int:
    """Call once() on every tick from start_ns (monotonic) until end_ns; returns the ticks that came late.

    A tick more than a period late moves the schedule to now: a loop that fell behind skips ahead
    rather than bursting to catch up (a burst would measure queueing, not the round trip).
    """
    late, tick = 0, start_ns
    while tick < end_ns:
        now = time.monotonic_ns()
        if now < tick:
            time.sleep((tick - now) / 1e9)
        elif now - tick > period_ns:
            late += 1
            tick = now
        once()
        tick += period_ns
    return late
