"""Where the server runs forward passes: inline on the I/O loop (fast CPU bundles) or on its thread."""

from __future__ import annotations

import time

import numpy as np
import pytest
from bridge_support import GatedPolicy, context, dealer, serving  # noqa: F401 (context: a fixture)

from bridge import protocol as wire
from bridge.server import BridgeServer, ServerConfig, ServerConfigError

OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)


def request(sock, header, arrays=()):
    sock.send_multipart(wire.encode({"v": wire.PROTOCOL_VERSION, "t_ns": 0, **header}, arrays))
    return wire.decode(sock.recv_multipart())


def hello(sock, policy):
    return request(sock, {"type": "hello", "seq": 1, "bundle": policy.name, "spec_hash": policy.spec_hash})


def send_step(sock, seq, obs=OBS):
    sock.send_multipart(wire.encode({"v": wire.PROTOCOL_VERSION, "t_ns": 0, "type": "step", "seq": seq, "deadline_us": 5_000_000}, [obs]))


def test_auto_runs_a_fast_cpu_bundle_inline_and_other_policies_on_the_thread(bundle):
    with serving(bundle) as server:
        assert server.inference_mode == "inline" and server.worker is None
    with serving(GatedPolicy(bundle, delay_s=0.002, device="cpu")) as server:  # 2 ms per forward pass: over the 200 us budget
        assert server.inference_mode == "thread" and server.worker is not None

    with serving(GatedPolicy(bundle)) as server:  # no device: a policy whose timing the server cannot vouch for
        assert server.inference_mode == "thread"
    with pytest.raises(ServerConfigError, match="inference 'fast'"):
        BridgeServer([bundle], ServerConfig(bind="tcp://127.0.0.1:*", telemetry=None, inference="fast"))


class SlowAtLargeBatches(GatedPolicy):
    """Fast at batch 1, 2 ms a pass at any larger batch: a pixel CNN on the CPU is like this."""

    def act(self, obs):
        self.delay_s = 0.002 if len(obs) > 1 else 0.0
        return super().act(obs)


def test_auto_times_the_batch_controllers_send_one_at_a_time(bundle):
    # The probe is of batch 1 (what controllers at independent phases send); large batches are
    # left to the inline window's watch (test_a_model_that_turns_slow_moves_to_the_thread).
    policy = SlowAtLargeBatches(bundle, device="cpu")
    with serving(policy) as server:
        assert server.inference_mode == "inline" and server.worker is None
        assert set(policy.batches) == {1}


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_both_modes_serve_the_bundles_actions(bundle, context, mode):
    with serving(bundle, inference=mode) as server:
        assert server.inference_mode == mode
        sock = dealer(context, server.endpoint)
        hello(sock, bundle)
        for seq in range(2, 12):
            send_step(sock, seq, OBS * seq)
            reply = wire.decode(sock.recv_multipart())
            assert (reply.header["type"], reply.header["re"], reply.header["batch"]) == ("action", seq, 1)
            np.testing.assert_allclose(reply.arrays[0], bundle.act(OBS * seq), rtol=0, atol=1e-6)
        sock.close()


def test_inline_batches_every_request_that_waited_into_one_forward_pass(bundle, context):
    wrapped = GatedPolicy(bundle, device="cpu")
    with serving(wrapped, inference="inline") as server:
        socks = [dealer(context, server.endpoint) for _ in range(8)]
        for sock in socks:
            hello(sock, wrapped)
        wrapped.batches.clear()
        wrapped.gate.clear()
        send_step(socks[0], 2, OBS)
        assert wrapped.entered.wait(5)  # the I/O loop itself is now inside infer
        for k, sock in enumerate(socks[1:], start=1):
            send_step(sock, 2, OBS + k)
        time.sleep(0.3)  # all seven reach the server's socket and wait there
        wrapped.gate.set()
        replies = [wire.decode(sock.recv_multipart()) for sock in socks]
        for sock in socks:
            sock.close()
    assert wrapped.batches == [1, 7]
    assert [r.header["batch"] for r in replies] == [1] + [7] * 7
    for k, reply in enumerate(replies):
        np.testing.assert_allclose(reply.arrays[0], bundle.act(OBS + k), rtol=0, atol=1e-6)


def test_a_slow_model_on_the_thread_still_lets_heartbeats_through(bundle, context):
    slow = GatedPolicy(bundle, delay_s=0.002, device="cpu")
    with serving(slow) as server:
        assert server.inference_mode == "thread"
        busy, other = dealer(context, server.endpoint), dealer(context, server.endpoint)
        hello(busy, slow)
        slow.gate.clear()
        send_step(busy, 2)
        assert slow.entered.wait(5)
        assert hello(other, slow).header["type"] == "welcome"
        beat = request(other, {"type": "heartbeat", "seq": 2}).header
        assert (beat["type"], beat["re"]) == ("heartbeat", 2)
        slow.gate.set()
        assert wire.decode(busy.recv_multipart()).header["type"] == "action"
        busy.close()
        other.close()


def test_a_model_that_turns_slow_moves_to_the_thread(bundle, context):
    turning = GatedPolicy(bundle, device="cpu")
    with serving(turning, inline_budget_us=5_000) as server:
        assert server.inference_mode == "inline"
        turning.delay_s = 0.01  # 10 ms, over the 5 ms budget, from now on
        sock = dealer(context, server.endpoint)
        hello(sock, turning)
        for seq in range(2, 102):  # one window of 100 forward passes
            send_step(sock, seq)
            assert wire.decode(sock.recv_multipart()).header["type"] == "action"
        end = time.monotonic() + 5  # the window is checked just after the 100th reply went out
        while server.inference_mode != "thread" and time.monotonic() < end:
            time.sleep(0.01)
        assert server.inference_mode == "thread" and server.worker is not None
        send_step(sock, 102)  # served by the thread now
        assert wire.decode(sock.recv_multipart()).header["re"] == 102
        sock.close()
        assert server.stats.swap()["counts"]["inference.moved_to_thread"] == 1


class MisbehavingPolicy(GatedPolicy):
    """The real bundle, except for observations whose first value names a fault: 7 raises,
    8 gives an action of 1.5 (outside [-1, 1]), 9 gives NaN."""

    def act(self, obs):
        obs = np.asarray(obs)
        if (obs[:, 0] == 7).any():
            raise RuntimeError("policy crashed")
        actions = super().act(obs).copy()
        actions[obs[:, 0] == 8] = 1.5
        actions[obs[:, 0] == 9] = np.nan
        return actions


def with_first(value):
    return np.concatenate([[value], OBS[1:]]).astype(np.float32)


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "in-a-batch"])
def test_a_policys_bad_output_is_clipped_or_refused_and_counted(bundle, context, batched):
    faulty = MisbehavingPolicy(bundle, device="cpu")
    firsts = [0.1, 8, 9, 7]
    with serving(faulty, inference="inline") as server:
        socks = [dealer(context, server.endpoint) for _ in firsts]
        for sock in socks:
            hello(sock, faulty)
        replies = []
        if batched:  # the healthy request holds the I/O loop in infer while the others queue up behind it
            faulty.gate.clear()
            send_step(socks[0], 2, with_first(0.1))
            assert faulty.entered.wait(5)
            for sock, first in zip(socks[1:-1], firsts[1:-1]):
                send_step(sock, 2, with_first(first))
            time.sleep(0.3)
            faulty.gate.set()
            replies = [wire.decode(sock.recv_multipart()) for sock in socks[:-1]]
            send_step(socks[-1], 2, with_first(7))  # a raise fails only its own batch
            replies.append(wire.decode(socks[-1].recv_multipart()))
        else:
            for sock, first in zip(socks, firsts):
                send_step(sock, 2, with_first(first))
                replies.append(wire.decode(sock.recv_multipart()))
        good = request(socks[0], {"type": "step", "seq": 3, "deadline_us": 5_000_000}, [OBS])  # still served
        for sock in socks:
            sock.close()
        counts = server.stats.swap()["counts"]
    assert faulty.batches == ([1, 2, 1] if batched else [1, 1, 1, 1])  # the crashed pass raised before it was recorded
    healthy, clipped, nan, crashed = replies
    np.testing.assert_allclose(healthy.arrays[0], bundle.act(with_first(0.1)), rtol=0, atol=1e-6)
    assert clipped.header["type"] == "action" and clipped.arrays[0].tolist() == [1.0, 1.0, 1.0]
    assert (nan.header["type"], nan.header["code"], nan.header["text"]) == ("error", 14, "policy produced a non-finite action")
    assert (crashed.header["type"], crashed.header["code"], crashed.header["text"]) == ("error", 14, "policy failed: RuntimeError")
    assert counts["safety.action_clipped"] == 1 and counts["errors.INTERNAL"] == 2
    assert good.header["type"] == "action"
