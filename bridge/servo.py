"""One servo pipeline: interpolation, watchdog and safety filter, a servo cycle at a time.

The controller runs it on the robot's clock and the digital twin on simulated time (every call
takes ``now_ns`` from the caller), so both send what the same code decides. Each fresh setpoint
(``feed``) starts a segment from the last applied command to its target over [start_ns, end_ns];
each ``cycle`` sends the point of that segment due now through the ``SafetyFilter``:

- RUN (the segment still runs, ``now_ns <= end_ns``): start + (target - start) * fraction, with
  fraction = (now_ns - start_ns) / (end_ns - start_ns) clamped to [0, 1];
- COAST (the segment ended; fewer than the watchdog's ``hold_after`` cycles since): the last
  applied command again, through the filter (its acceleration limit may still carry a moving
  robot on);
- HOLD (``hold_after`` cycles without a fresh setpoint, or none yet): the filter's controlled
  deceleration, then standing still, until the next ``feed``.

Imports numpy only (and bridge.safety, bridge.watchdog).
"""

from __future__ import annotations

import numpy as np

from bridge.safety import SafetyFilter
from bridge.watchdog import ServoState, Watchdog


class ServoPipeline:
    """Owns nothing but the current segment: the filter and the watchdog stay readable by the caller.

    After each ``cycle``: ``state`` is what that cycle did (RUN, COAST or HOLD; HOLD before the
    first setpoint too) and ``changed`` whether the command sent differs from the one the cycle
    asked for (a clamp acted, or a hold). ``holds`` counts the holds the watchdog started; each
    also counts as ``safety.counts["hold"]``.
    """

    def __init__(self, safety: SafetyFilter, watchdog: Watchdog) -> None:
        self.safety = safety
        self.watchdog = watchdog
        self.holds = 0
        self.state = ServoState.HOLD  # nothing to follow before the first setpoint
        self.changed = False
        self._start: np.ndarray | None = None  # segment: start command, target - start, times
        self._delta: np.ndarray | None = None
        self._start_ns = 0
        self._end_ns = 0

    def feed(self, target: np.ndarray, start_ns: int, end_ns: int) -> bool:
        """A fresh setpoint: a segment from the last applied command to target over [start_ns, end_ns].

        The segment starts at ``safety.q``: assign that first to start from elsewhere (the twin
        re-anchors on its cell's own target). The watchdog counts the setpoint as fed at start_ns.
        Returns True if this ends a hold (motion resumes).
        """
        if not end_ns > start_ns:
            raise ValueError(f"a segment must end after it starts: start_ns {start_ns}, end_ns {end_ns}")
        start = self.safety.q.copy()
        target = np.asarray(target, dtype=np.float64)
        if target.shape != start.shape:
            raise ValueError(f"target has shape {target.shape}; the robot has {start.shape[0]} joints")
        self._start, self._delta = start, target - start
        self._start_ns, self._end_ns = start_ns, end_ns
        return self.watchdog.fed(start_ns)

    def cycle(self, now_ns: int, measured: np.ndarray | None = None) -> np.ndarray:
        """One servo cycle at now_ns: the joint positions to send (a new array).

        ``measured``: the robot's joint positions now, for the filter's relative-target cap (None: no cap).
        """
        safety, watchdog = self.safety, self.watchdog
        fed = self._start is not None
        before = watchdog.state
        # Before the first setpoint nothing is missed: no hold to count, no session to drop.
        state = watchdog.tick(not fed or now_ns <= self._end_ns, now_ns)
        if state is ServoState.HOLD or not fed:
            if state is ServoState.HOLD and before is not ServoState.HOLD:
                self.holds += 1
                safety.counts["hold"] += 1
            self.state, self.changed = ServoState.HOLD, True
            return safety.hold()
        if state is ServoState.COAST:
            command = safety.q
        else:
            fraction = min(1.0, max(0.0, (now_ns - self._start_ns) / (self._end_ns - self._start_ns)))
            command = self._start + self._delta * fraction
        applied = safety.apply(command, measured)
        self.state = state
        self.changed = applied.tolist() != command.tolist()
        return applied
