"""The chunk queue's timing on a fake clock (plain nanosecond numbers): when it asks for the next chunk,
how it merges overlapping chunks, what it refuses as stale, and that a dry queue means hold. Then the
executor on top of it, with a link that answers after a set delay on the same fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.chunks import ChunkConfigError, ChunkQueue, ChunkQueueConfig
from bridge.executor import ChunkExecutor

P = 50_000_000  # 20 Hz control period, ns
MS = 1_000_000


def chunk(values, dim: int = 2) -> np.ndarray:
    """A chunk whose row i is [v_i, v_i, ...]: easy to tell rows and chunks apart."""
    return np.repeat(np.asarray(values, dtype=np.float64)[:, None], dim, axis=1)


def first(action) -> float:
    return None if action is None else float(action[0])


def test_actions_come_out_one_per_period_from_the_observation_time_on():
    q = ChunkQueue(ChunkQueueConfig(P, 4))
    assert q.merge(chunk([0, 1, 2, 3]), start_ns=0, now_ns=1 * MS)
    assert [first(q.take(t)) for t in (0, P, 2 * P + 3 * MS, 3 * P - 4 * MS)] == [0, 1, 2, 3]
    assert q.take(4 * P) is None  # dry: the caller holds
    assert q.counts["served"] == 4 and q.counts["dry"] == 1


def test_a_late_chunk_starts_at_the_row_for_now():
    q = ChunkQueue(ChunkQueueConfig(P, 5))
    # The observation was taken at 0; the chunk arrives 80 ms later, in the second period after it.
    assert q.merge(chunk([10, 11, 12, 13, 14]), 0, 80 * MS)
    assert first(q.take(2 * P)) == 12  # rows 0 and 1 were for periods already over at the merge: never queued
    assert q.counts["expired"] == 0 and len(q) == 2


def test_the_next_chunk_is_asked_for_before_the_queue_runs_dry_by_the_measured_round_trip():
    q = ChunkQueue(ChunkQueueConfig(P, 10, lead_ns=P))
    assert q.request_due(0)  # nothing queued
    q.requested(0)
    assert not q.request_due(10 * MS)  # one in flight
    q.merge(chunk(range(10)), 0, 70 * MS, sent_ns=0)  # round trip 70 ms
    assert q.rtt_estimate_ns == 70 * MS
    # Queued until 10 periods = 500 ms: ask once at most 70 + 50 ms remain, i.e. from 380 ms on.
    t = 2 * P
    while not q.request_due(t):
        q.take(t)
        t += P
    assert t == 8 * P  # remaining 100 ms <= 120 ms; at 7 periods 150 ms remained
    assert 500 * MS - t >= q.rtt_estimate_ns  # the reply can come before the queue is dry


def test_the_round_trip_estimate_is_the_slowest_recent_one():
    q = ChunkQueue(ChunkQueueConfig(P, 10, rtt_window=3))
    for i, rtt in enumerate([20, 90, 30, 40]):
        start = (i + 1) * 10 * P
        q.merge(chunk([0]), start, start + rtt * MS, sent_ns=start)
    assert q.rtt_estimate_ns == 90 * MS  # the 20 fell out of the window of 3
    start = 60 * P
    q.merge(chunk([0]), start, start + 10 * MS, sent_ns=start)
    assert q.rtt_estimate_ns == 40 * MS  # and now the 90 did too


def test_replan_after_asks_again_after_that_many_actions_of_the_newest_chunk():
    q = ChunkQueue(ChunkQueueConfig(P, 10, replan_after=3))
    q.merge(chunk(range(10)), 0, 1 * MS, sent_ns=0)
    due = []
    for k in range(4):
        due.append(q.request_due(k * P))
        q.take(k * P)
    assert due == [False, False, False, True]


def test_a_newer_chunk_replaces_the_queued_actions_from_the_current_period_on():
    q = ChunkQueue(ChunkQueueConfig(P, 4))
    q.merge(chunk([0, 1, 2, 3]), 0, 1 * MS)
    assert [first(q.take(0)), first(q.take(P))] == [0, 1]  # executed: committed
    assert q.merge(chunk([20, 21, 22, 23]), P, P + 30 * MS)  # observed at period 1, arrives 30 ms into it
    # Its row for period 1 comes too late (period 1 runs the committed 1); rows 21.. replace the old 2 and 3.
    assert [first(q.take(t * P)) for t in (2, 3, 4, 5)] == [21, 22, 23, None]


def test_blend_crossfades_the_first_replaced_periods():
    q = ChunkQueue(ChunkQueueConfig(P, 6, blend=2))
    q.merge(chunk([0, 0, 0, 0, 0, 0]), 0, 1 * MS)
    q.take(0)
    q.take(P)
    q.merge(chunk([9, 9, 9, 9, 9, 9]), 2 * P, 2 * P)  # covers periods 2..7; old rows exist for 2..5
    got = [first(q.take(t * P)) for t in range(2, 8)]
    assert got == pytest.approx([3.0, 6.0, 9.0, 9.0, 9.0, 9.0])  # w = 1/3, 2/3, then the new chunk alone


def test_a_chunk_from_an_older_observation_than_the_merged_one_is_ignored():
    q = ChunkQueue(ChunkQueueConfig(P, 4))
    q.merge(chunk([5, 5, 5, 5]), 2 * P, 2 * P + MS)
    assert not q.merge(chunk([1, 1, 1, 1]), P, 2 * P + 2 * MS)  # reordered: observed before the one merged
    assert first(q.take(2 * P)) == 5 and q.counts["old_chunks"] == 1


def test_a_stale_chunk_is_never_executed():
    q = ChunkQueue(ChunkQueueConfig(P, 4, max_age_ns=150 * MS))
    assert not q.merge(chunk([7, 7, 7, 7]), 0, 151 * MS)  # older than the limit on arrival: refused whole
    assert q.take(151 * MS) is None and q.counts["stale_chunks"] == 1


def test_queued_actions_past_the_stale_limit_are_dropped_not_executed():
    q = ChunkQueue(ChunkQueueConfig(P, 8, max_age_ns=120 * MS))
    q.merge(chunk(range(8)), 0, 1 * MS)
    assert [first(q.take(t * P)) for t in range(3)] == [0, 1, 2]  # 0, 50, 100 ms after the observation
    assert q.take(3 * P) is None  # 150 ms > 120 ms: everything left came from that observation
    assert q.counts["stale_actions"] == 5 and len(q) == 0


def test_the_default_stale_limit_is_the_chunks_horizon():
    assert ChunkQueueConfig(P, 10).stale_ns == 10 * P


def test_an_unanswered_request_counts_as_lost_and_the_next_one_may_go():
    q = ChunkQueue(ChunkQueueConfig(P, 4))
    q.requested(0)
    assert not q.request_due(149 * MS)
    assert q.request_due(150 * MS) and q.counts["lost"] == 1  # 3 x the estimate (before any reply: one period)


def test_boundary_jumps_are_measured_apart_from_steps_within_a_chunk():
    q = ChunkQueue(ChunkQueueConfig(P, 3))
    q.merge(chunk([0.0, 0.1, 0.2]), 0, 0)
    q.take(0)
    q.take(P)
    q.merge(chunk([0.9, 1.0, 1.1]), 2 * P, 2 * P)
    q.take(2 * P)
    q.take(3 * P)
    assert q.boundary_jumps == pytest.approx([0.8]) and q.step_jumps == pytest.approx([0.1, 0.1])
    s = q.summary()
    assert s["served_fraction"] == 1.0 and s["hold_fraction"] == 0.0 and s["boundaries"] == 1


@pytest.mark.parametrize("kwargs", [dict(period_ns=0, chunk_length=2), dict(period_ns=P, chunk_length=0),
                                    dict(period_ns=P, chunk_length=2, blend=-1), dict(period_ns=P, chunk_length=2, replan_after=0),
                                    dict(period_ns=P, chunk_length=2, max_age_ns=0)])
def test_settings_that_cannot_work_are_refused(kwargs):
    with pytest.raises(ChunkConfigError):
        ChunkQueueConfig(**kwargs)


class DelayedLink:
    """Answers each request with a chunk of `length` rows after `delay_ns` on the fake clock; drops listed seqs.

    Waiting in poll_chunks moves the fake clock on, to the next reply or the end of the timeout, as a
    blocking receive would.
    """

    def __init__(self, now: list[int], delay_ns: int, length: int, drop=()) -> None:
        self.now, self.delay_ns, self.length, self.drop = now, delay_ns, length, set(drop)
        self.in_flight: list[tuple[int, int, int]] = []  # (due, seq, start)
        self.seq = 0

    def send_chunk_request(self, observation, obs_t_ns, deadline_s, max_actions):
        self.seq += 1
        if self.seq not in self.drop:
            self.in_flight.append((obs_t_ns + self.delay_ns, self.seq, obs_t_ns))
        return self.seq

    def poll_chunks(self, timeout_s):
        end = self.now[0] + int(timeout_s * 1e9)
        self.now[0] = min([end] + [due for due, _, _ in self.in_flight if due > self.now[0]])
        now = self.now[0]
        ready = [r for r in self.in_flight if r[0] <= now]
        self.in_flight = [r for r in self.in_flight if r[0] > now]
        return [Reply(chunk([seq] * self.length), start) for _, seq, start in ready]


class Reply:
    def __init__(self, actions, start_ns) -> None:
        self.actions, self.start_ns, self.obs_age_us = actions, start_ns, 0.0


def run_executor(delay_ns: int, periods: int, drop=(), **config) -> tuple[ChunkExecutor, list]:
    now = [0]
    link = DelayedLink(now, delay_ns, 10, drop)
    executor = ChunkExecutor(link, ChunkQueueConfig(P, 10, **config), clock=lambda: now[0])
    actions = []
    for k in range(periods):
        now[0] = k * P
        actions.append(first(executor.tick(np.zeros(3))))
        executor.wait(k * P + P - 1)  # a control loop's sleep: merges what arrives meanwhile
    return executor, actions


def test_the_executor_hides_a_round_trip_longer_than_a_period():
    executor, actions = run_executor(80 * MS, 60)
    assert actions[:2] == [None, None]  # the first chunk is 80 ms away: hold until it comes
    assert None not in actions[2:]  # from then on every period is served from the queue
    s = executor.summary()
    assert s["dry"] == 2 and s["stale_chunks"] == 0 and s["requests"] >= 6


def test_the_executor_rides_out_a_lost_reply_on_the_queue_when_it_replans_early():
    # Re-observing after 5 of 10 actions leaves 5 queued: enough to notice the loss (3 round trips) and ask again.
    executor, actions = run_executor(30 * MS, 60, drop={3}, replan_after=5)
    assert None not in actions[1:] and executor.summary()["lost"] == 1
    # Asking only when the queue is about to run dry (round trip + one period) leaves no room for a loss.
    executor, actions = run_executor(30 * MS, 60, drop={3})
    assert actions.count(None) > 1 and executor.summary()["lost"] == 1
