"""The twin with a chunked bundle (a real clone, a real server process, real time): its chunk executor
hides an added 30-40 ms round trip that a single-action controller cannot, and that single-action
controller still drives the same chunked bundle (on a clean link)."""

from __future__ import annotations

import pytest
from twin_support import bridge_server, clone_bundle

from genba.twin import Faults, TwinConfig, run_twin

EPISODES = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bundle = clone_bundle("reach", tmp_path_factory.mktemp("reach-chunk"), demo_episodes=30, iterations=300, eval_episodes=2,
                          chunk=6, demo_noise=0.1)
    with bridge_server(bundle) as endpoint:
        yield endpoint


def test_the_chunk_executor_serves_every_period_from_the_queue_through_30_ms_of_added_delay(server):
    report = run_twin(TwinConfig("reach", server, episodes=EPISODES, faults=Faults(latency_ms=30.0, jitter_ms=10.0)),
                      log=lambda line: None)
    chunks = report.chunks
    assert chunks is not None and chunks["stale_chunks"] == 0
    # Only the first period of each episode waits for its first chunk; the rest come from the queue.
    assert EPISODES <= chunks["dry"] <= EPISODES * 2 and chunks["served"] >= report.control_steps - EPISODES * 2
    assert report.step_status.get("queue", 0) == chunks["served"] and report.step_status.get("dry", 0) == chunks["dry"]
    assert chunks["requests"] < report.control_steps  # a request per several periods, not one per period


def test_a_single_action_controller_drives_the_chunked_bundle_and_holds_through_the_same_delay(server):
    clean = run_twin(TwinConfig("reach", server, episodes=1, chunks=False), log=lambda line: None)
    assert clean.chunks is None and clean.step_status == {"ok": clean.control_steps}
    late = run_twin(TwinConfig("reach", server, episodes=1, chunks=False, faults=Faults(latency_ms=30.0, jitter_ms=10.0)),
                    log=lambda line: None)
    # 30-40 ms exceeds its deadline, half the 50 ms period: every step missed, held (what the issue started from).
    assert late.step_status == {"deadline": late.control_steps} and late.successes == 0


def test_losses_come_at_the_set_rate_alone_or_in_bursts_of_the_set_mean_length():
    import numpy as np

    from genba.twin.faults import LossChannel

    def runs(channel, n=200_000):
        lost = np.array([channel.lose() for _ in range(n)])
        starts = np.flatnonzero(lost[1:] & ~lost[:-1])
        return lost.mean(), lost.sum() / max(1, len(starts))

    rate, burst = runs(LossChannel(0.05, 1.0, np.random.default_rng(0)))
    assert abs(rate - 0.05) < 0.005 and burst < 1.1
    rate, burst = runs(LossChannel(0.05, 4.0, np.random.default_rng(0)))
    assert abs(rate - 0.05) < 0.01 and 3.5 < burst < 4.5
    assert not LossChannel(0.0, 4.0, np.random.default_rng(0)).lose()
