"""The servo loop's watchdog: counts servo cycles without a fresh setpoint.

A setpoint is fresh while the servo loop is still interpolating towards it. Every cycle after
that segment ends without a newer setpoint is a missed cycle; after ``hold_after`` misses the
loop starts a controlled deceleration to hold, and after ``drop_after_s`` without any setpoint
the session is dropped (the client reconnects). Counting cycles, not wall time, makes the
"hold within 2 servo cycles" guarantee independent of how late the loop itself runs.
``bridge.servo.ServoPipeline`` ticks it once per servo cycle and acts on its state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ServoState(enum.Enum):
    RUN = "run"  # fresh setpoint: follow it
    COAST = "coast"  # segment ended, within the grace cycles: stay at the last applied command
    HOLD = "hold"  # too many missed cycles: controlled deceleration, then stand still


@dataclass
class Watchdog:
    hold_after: int = 2  # missed servo cycles before holding
    drop_after_s: float = 1.0  # seconds without a setpoint before the session is dropped
    missed: int = 0
    state: ServoState = ServoState.RUN
    last_fed_ns: int | None = None
    drop_requested: bool = False  # set once per silence; cleared by the next setpoint
    drop_now: bool = False  # True only on the cycle the drop became due

    def fed(self, now_ns: int) -> bool:
        """A fresh setpoint arrived; returns True if this ends a hold (motion resumes)."""
        resumed = self.state is ServoState.HOLD
        self.missed = 0
        self.state = ServoState.RUN
        self.last_fed_ns = now_ns
        self.drop_requested = False
        return resumed

    def tick(self, segment_active: bool, now_ns: int) -> ServoState:
        """Advance one servo cycle; ``segment_active`` is whether the interpolation still runs."""
        self.drop_now = False
        if segment_active:
            return self.state
        self.missed += 1
        self.state = ServoState.HOLD if self.missed >= self.hold_after else ServoState.COAST
        if (
            not self.drop_requested
            and self.last_fed_ns is not None
            and now_ns - self.last_fed_ns >= self.drop_after_s * 1e9
        ):
            self.drop_requested = True
            self.drop_now = True
        return self.state
