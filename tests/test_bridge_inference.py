"""Where the server runs forward passes: inline on the I/O loop (fast CPU bundles) or on its thread."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from bridge import gantry
from bridge import protocol as wire
from bridge.server import BridgeServer, ServerConfig, ServerConfigError
from bridge_support import GatedPolicy, context, dealer, serving  # noqa: F401 (context: a fixture)
from policies.bundle import load_bundle

OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(gantry.cached_gantry_bundle(tmp_path_factory.getbasetemp() / "bundles"), backend="onnx", device="cpu")


def request(sock, header, arrays=()):
    sock.send_multipart(wire.encode({"v": 1, "t_ns": 0, **header}, arrays))
    return wire.decode(sock.recv_multipart())


def hello(sock, policy):
    return request(sock, {"type": "hello", "seq": 1, "bundle": policy.name, "spec_hash": policy.spec_hash})


def send_step(sock, seq, obs=OBS):
    sock.send_multipart(wire.encode({"v": 1, "t_ns": 0, "type": "step", "seq": seq, "deadline_us": 5_000_000}, [obs]))


def test_auto_runs_a_fast_cpu_bundle_inline_and_other_policies_on_the_thread(bundle):
    with serving(bundle) as server:
        assert server.inference_mode == "inline" and server.worker is None
    with serving(GatedPolicy(bundle, delay_s=0.002, device="cpu")) as server:  # 2 ms per forward pass: over the 200 us budget
        assert server.inference_mode == "thread" and server.worker is not None

    with serving(GatedPolicy(bundle)) as server:  # no device: a policy whose timing the server cannot vouch for
        assert server.inference_mode == "thread"
    with pytest.raises(ServerConfigError, match="inference 'fast'"):
        BridgeServer([bundle], ServerConfig(bind="tcp://127.0.0.1:*", telemetry=None, inference="fast"))


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
            np.testing.assert_allclose(reply.arrays[0], bundle.infer(OBS * seq), rtol=0, atol=1e-6)
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
        np.testing.assert_allclose(reply.arrays[0], bundle.infer(OBS + k), rtol=0, atol=1e-6)


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
