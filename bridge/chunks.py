"""The controller's queue of time-stamped future actions (action chunks), as pure logic on given times.

A chunked policy answers one observation with H actions, one control period apart: row i is the
action for the period that starts ``start_ns + i * period_ns``, where ``start_ns`` is when the
observation was taken (controller clock). The controller executes them from this queue, one per
control period, and asks for the next chunk before the queue runs dry, so a round trip of tens of
milliseconds is hidden behind actions already queued instead of costing a held robot.

Every call takes the time (``now_ns``) from the caller: the executor (bridge.executor) passes its
clock, tests pass plain numbers (a fake clock).

The rules, each one reason:

- **Which action now** (``take``): the queued action whose due time is within half a period of now.
  Actions whose time has passed are dropped unexecuted (``expired``): a late chunk's first rows
  were meant for periods that are gone, so the queue picks up at the row for *now*.
- **Stale limit** (``max_age_ns``, default the chunk's horizon ``H * period``): an action computed
  from an observation older than this is never executed; a chunk already that old when it arrives
  is refused as a whole (``stale_chunks``). Beyond its horizon a chunk has no prediction anyway,
  and a bounded age bounds how long the robot moves on a picture of the world it no longer sees.
- **Merge** (``merge``): a newer chunk (newer observation) replaces every queued action from the first
  period it covers that has not been executed yet; the action being executed this period is never
  changed (it is committed: its setpoint is already in the servo loop). With ``blend`` = K > 0 the
  first K replaced periods are crossfaded instead, ``old * (1 - w) + new * w`` with w = k / (K + 1)
  for the k-th (k = 1..K), to soften the step at the boundary. A chunk from an observation no newer
  than the last merged one (a reordered or duplicated reply) is ignored (``old_chunks``).
- **When to ask** (``request_due``): when what is queued runs out within the round-trip estimate
  plus ``lead_ns`` (the queue must not run dry while the request is on its way), or after
  ``replan_after`` actions of the newest chunk (re-observe even when the link is fast: fresher
  observations close the loop more often), with at most one request in flight. The round-trip
  estimate is the slowest of the last ``rtt_window`` round trips (jitter included; before the first
  reply: one period). A request unanswered for ``lost_after`` estimates (at least two periods) is
  taken as lost and the next one may go out.
- **Dry queue**: ``take`` returns None; the caller holds (its watchdog and safety filter decide how).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class ChunkConfigError(ValueError):
    """Queue settings that cannot work."""


@dataclass(frozen=True)
class ChunkQueueConfig:
    period_ns: int  # control period of each action (1 / control_hz)
    chunk_length: int  # H: actions per chunk the policy gives
    max_age_ns: int | None = None  # stale limit; None: H * period_ns
    lead_ns: int | None = None  # request margin beyond the round-trip estimate; None: one period
    blend: int = 0  # periods crossfaded at a chunk boundary (0: the newer chunk replaces)
    replan_after: int | None = None  # ask again after this many actions of the newest chunk (None: only when running dry)
    rtt_window: int = 16
    lost_after: float = 3.0  # round-trip estimates after which an unanswered request counts as lost

    def __post_init__(self) -> None:
        if self.period_ns <= 0 or self.chunk_length < 1:
            raise ChunkConfigError(f"period_ns must be positive and chunk_length >= 1, got {self.period_ns}, {self.chunk_length}")
        if self.max_age_ns is not None and self.max_age_ns <= 0:
            raise ChunkConfigError(f"max_age_ns must be positive, got {self.max_age_ns}")
        if self.blend < 0 or (self.replan_after is not None and self.replan_after < 1):
            raise ChunkConfigError(f"blend must be >= 0 and replan_after >= 1, got {self.blend}, {self.replan_after}")

    @property
    def stale_ns(self) -> int:
        return self.max_age_ns if self.max_age_ns is not None else self.chunk_length * self.period_ns


class _Slot(NamedTuple):
    due_ns: int
    action: np.ndarray
    obs_ns: int  # when the observation it was computed from was taken


class ChunkQueue:
    """Queued future actions plus the request timing; see the module doc for the rules."""

    def __init__(self, config: ChunkQueueConfig) -> None:
        self.config = config
        self._slots: deque[_Slot] = deque()
        self._half = config.period_ns // 2
        self._newest_obs_ns: int | None = None
        self._in_flight: int | None = None  # send time of the outstanding request
        self._rtts: deque[int] = deque(maxlen=config.rtt_window)
        self._since_merge = 0  # actions executed from the newest chunk
        self._last_action: np.ndarray | None = None
        self._boundary = False  # the next executed action is the first of a newly merged chunk
        # Counters, for reports: periods served from the queue / dry, and what was thrown away why.
        self.counts = {"served": 0, "dry": 0, "expired": 0, "stale_actions": 0, "stale_chunks": 0, "old_chunks": 0,
                       "merged": 0, "requests": 0, "lost": 0}
        self.boundary_jumps: list[float] = []  # |first action of a new chunk - the action before it| (max over dims)
        self.step_jumps: list[float] = []  # the same between consecutive actions of one chunk, for comparison

    # ------------------------------------------------------------------ timing

    @property
    def rtt_estimate_ns(self) -> int:
        return max(self._rtts) if self._rtts else self.config.period_ns

    def queued_until_ns(self) -> int | None:
        """When the queue runs dry: the end of the last queued action's period (None: empty)."""
        return self._slots[-1].due_ns + self.config.period_ns if self._slots else None

    def request_due(self, now_ns: int) -> bool:
        cfg = self.config
        if self._in_flight is not None:
            lost_ns = max(int(cfg.lost_after * self.rtt_estimate_ns), 2 * cfg.period_ns)
            if now_ns - self._in_flight < lost_ns:
                return False
            self._in_flight = None
            self.counts["lost"] += 1
        until = self.queued_until_ns()
        if until is None:
            return True
        lead = cfg.period_ns if cfg.lead_ns is None else cfg.lead_ns
        if until - now_ns <= self.rtt_estimate_ns + lead:
            return True
        return cfg.replan_after is not None and self._since_merge >= cfg.replan_after

    def requested(self, now_ns: int) -> None:
        """A request went out at now_ns."""
        self._in_flight = now_ns
        self.counts["requests"] += 1

    # ------------------------------------------------------------------ chunks in

    def merge(self, actions: np.ndarray, start_ns: int, now_ns: int, sent_ns: int | None = None) -> bool:
        """Add a chunk (rows one period apart from start_ns, the observation's time); False if refused.

        sent_ns: when its request went out, for the round-trip estimate (None: not ours to time).
        """
        cfg = self.config
        if sent_ns is not None:
            self._rtts.append(now_ns - sent_ns)
            if self._in_flight is not None and sent_ns >= self._in_flight:
                self._in_flight = None
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or len(actions) == 0:
            raise ValueError(f"a chunk is a 2-D array of at least one action, got shape {actions.shape}")
        if now_ns - start_ns > cfg.stale_ns:
            self.counts["stale_chunks"] += 1
            return False
        if self._newest_obs_ns is not None and start_ns <= self._newest_obs_ns:
            self.counts["old_chunks"] += 1
            return False
        self._newest_obs_ns = start_ns
        # Rows from the current period on; an action already taken is out of the queue, so it stays committed.
        first = max(0, -(-(now_ns - self._half - start_ns) // cfg.period_ns))
        new = [_Slot(start_ns + i * cfg.period_ns, actions[i], start_ns) for i in range(first, len(actions))]
        if not new:
            self.counts["stale_chunks"] += 1
            return False
        kept = deque(s for s in self._slots if s.due_ns < new[0].due_ns - self._half)
        replaced = [s for s in self._slots if s.due_ns >= new[0].due_ns - self._half]
        for k, old in enumerate(replaced[: min(cfg.blend, len(new))]):
            w = (k + 1) / (cfg.blend + 1)
            new[k] = new[k]._replace(action=old.action * (1.0 - w) + new[k].action * w)
        kept.extend(new)
        self._slots = kept
        self._since_merge = 0
        self._boundary = True
        self.counts["merged"] += 1
        return True

    # ------------------------------------------------------------------ actions out

    def take(self, now_ns: int) -> np.ndarray | None:
        """The action for the control period at now_ns, or None (queue dry: hold)."""
        slots, half, stale = self._slots, self._half, self.config.stale_ns
        while slots and slots[0].due_ns < now_ns - half:
            slots.popleft()
            self.counts["expired"] += 1
        if slots and now_ns - slots[0].obs_ns > stale:  # the whole rest comes from that observation or older
            self.counts["stale_actions"] += len(slots)
            slots.clear()
        if not slots or slots[0].due_ns > now_ns + half:
            self.counts["dry"] += 1
            return None
        action = slots.popleft().action
        if self._last_action is not None:
            jump = float(np.max(np.abs(action - self._last_action)))
            (self.boundary_jumps if self._boundary else self.step_jumps).append(jump)
        self._boundary = False
        self._last_action = action
        self._since_merge += 1
        self.counts["served"] += 1
        return action

    def clear(self, now_ns: int) -> None:
        """Forget queued actions (an episode ends); chunks from observations before now_ns are refused as old."""
        self._slots.clear()
        self._newest_obs_ns = now_ns
        self._in_flight = None
        self._last_action = None
        self._boundary = False
        self._since_merge = 0

    def __len__(self) -> int:
        return len(self._slots)

    def summary(self) -> dict:
        """Fractions of control periods served from the queue and held, discontinuities at boundaries."""
        c = self.counts
        periods = c["served"] + c["dry"]
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        return {**c, "periods": periods, "served_fraction": c["served"] / periods if periods else None,
                "hold_fraction": c["dry"] / periods if periods else None, "rtt_estimate_ms": self.rtt_estimate_ns / 1e6,
                "boundary_jump_mean": mean(self.boundary_jumps), "step_jump_mean": mean(self.step_jumps),
                "boundaries": len(self.boundary_jumps)}
