"""Server and client over real ZeroMQ sockets on loopback, with a real exported bundle.

The server runs in a thread of this process (its own context and sockets); test controllers are
raw DEALER sockets (to send anything at all) or the real BridgeClient.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from bridge_support import TIMEOUT_MS, GatedPolicy, context, dealer, serving, wait_for  # noqa: F401 (context: a fixture)

from bridge import gantry
from bridge import protocol as wire
from bridge.client import BridgeClient, BridgeUnavailable, ClientConfig, HandshakeRejected
from bridge.endpoints import is_loopback_endpoint
from bridge.limits import SafetyLimits
from bridge.policy import BundleSpecError
from bridge.protocol import ErrorCode
from bridge.server import BridgeServer, ServerConfig, ServerConfigError
from bridge.spec import spec_hash

GANTRY_ROBOT = {"model": "gantry-3", "joint_names": ["x", "y", "z"]}
GANTRY = gantry.feature_spec()
GANTRY_HASH = spec_hash(GANTRY["observation"], GANTRY["action"], GANTRY["control_hz"])


V = wire.PROTOCOL_VERSION


def send(sock, header, arrays=()):
    sock.send_multipart(wire.encode({"v": V, "t_ns": 0, **header}, arrays))


def recv(sock):
    return wire.decode(sock.recv_multipart())


def recv_error(sock):
    """An error reply read with plain msgpack: a VERSION_MISMATCH answer is in the refused message's version."""
    return wire.Message(msgpack.unpackb(sock.recv_multipart()[0]), ())


def hello(sock, bundle, seq=1, **extra):
    send(sock, {"type": "hello", "seq": seq, "bundle": bundle.name, "spec_hash": bundle.spec_hash, **extra})
    return recv(sock)


def step(sock, seq, obs, deadline_us=2_000_000):
    send(sock, {"type": "step", "seq": seq, "deadline_us": deadline_us}, [np.asarray(obs, dtype=np.float32)])
    return recv(sock)


OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)


# ------------------------------------------------------------------ handshake and steps


def test_welcome_describes_the_bundle(bundle, context):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        welcome = hello(sock, bundle, robot=GANTRY_ROBOT, client="test-cell").header
        sock.close()
    assert welcome["type"] == "welcome" and welcome["re"] == 1
    assert (welcome["bundle"], welcome["spec_hash"]) == ("gantry-reach", bundle.spec_hash)
    assert (welcome["obs_dim"], welcome["act_dim"], welcome["control_hz"], welcome["action_kind"]) == (6, 3, 20.0, "joint_delta")
    assert welcome["limits"] == SafetyLimits.from_robot_spec(gantry.robot_spec()).to_robot_spec()
    assert welcome["max_message_bytes"] == 65536 and welcome["protocol"] == [2]
    assert len(welcome["session"]) == 16
    # The layout itself, as the manifest states it, and the hash it stands for.
    assert (welcome["observation"], welcome["action"]) == (bundle.manifest["observation"], bundle.manifest["action"])
    assert [(f["name"], f["size"], f["unit"]) for f in welcome["observation"]["features"]] == [
        ("joint_position", 3, "m"), ("goal_tool_position", 3, "m")]
    assert welcome["action"]["features"][0]["scale"] == [0.025] * 3
    assert spec_hash(welcome["observation"], welcome["action"], welcome["control_hz"]) == welcome["spec_hash"]


def test_step_returns_the_bundles_action_for_that_observation(bundle, context):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        hello(sock, bundle)
        reply = step(sock, 2, OBS)
        sock.close()
    assert reply.header["type"] == "action" and reply.header["re"] == 2 and reply.header["batch"] == 1
    assert reply.header["infer_us"] > 0 and reply.header["queue_us"] >= 0
    np.testing.assert_array_equal(reply.arrays[0], bundle.act(OBS))


def test_client_steps_reset_and_heartbeat(bundle):
    with serving(bundle) as server:
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash, robot=GANTRY_ROBOT)) as client:
            welcome = client.connect(5.0)
            assert welcome.limits.model == "gantry-3" and welcome.control_hz == 20.0
            results = [client.step(OBS * k, deadline_s=2.0) for k in range(5)]
            assert client.reset(2.0, episode=1) and client.heartbeat(2.0, {"safety": {"hold": 0}})
    assert [r.status for r in results] == ["ok"] * 5
    for k, result in enumerate(results):
        np.testing.assert_array_equal(result.action, bundle.act(OBS * k))
    assert [r.seq for r in results] == [2, 3, 4, 5, 6]  # hello was seq 1
    assert client.stats.count == 5 and client.stats.deadline_misses == 0


def test_concurrent_requests_are_batched_into_one_forward_pass(bundle, context):
    gated = GatedPolicy(bundle)
    with serving(gated) as server:
        socks = [dealer(context, server.endpoint) for _ in range(8)]
        for sock in socks:
            hello(sock, bundle)
        gated.gate.clear()
        observations = [OBS + i for i in range(8)]
        send(socks[0], {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [observations[0]])
        assert gated.entered.wait(5)  # the worker is now inside infer for request 0
        for sock, obs in zip(socks[1:], observations[1:]):
            send(sock, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [obs])
        assert wait_for(lambda: all(s.last_seq == 2 for s in server.sessions.values()), 5)  # all seven queued
        gated.gate.set()
        replies = [recv(sock) for sock in socks]
        for sock in socks:
            sock.close()
    assert gated.batches == [1, 7]
    assert [r.header["batch"] for r in replies] == [1] + [7] * 7
    expected = bundle.act(np.stack(observations[1:]))
    for reply, obs, want in zip(replies[1:], observations[1:], expected):
        np.testing.assert_allclose(reply.arrays[0], want, rtol=0, atol=1e-6)  # batch kernels may differ in the last bit


def test_inference_never_blocks_the_io_loop(bundle, context):
    gated = GatedPolicy(bundle)
    with serving(gated) as server:
        busy, other = dealer(context, server.endpoint), dealer(context, server.endpoint)
        hello(busy, bundle)
        gated.gate.clear()
        send(busy, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [OBS])
        assert gated.entered.wait(5)
        # While inference is stuck, another controller still gets its handshake and heartbeat answered.
        assert hello(other, bundle).header["type"] == "welcome"
        send(other, {"type": "heartbeat", "seq": 2})
        beat = recv(other).header
        assert (beat["type"], beat["re"]) == ("heartbeat", 2)
        assert gated.batches == [1]  # still inside the first forward pass
        gated.gate.set()
        assert recv(busy).header["type"] == "action"
        busy.close()
        other.close()


# ------------------------------------------------------------------ typed errors


def expect_error(reply, code, fragment, re):
    assert reply.header["type"] == "error", reply.header
    assert (reply.header["code"], reply.header["name"]) == (int(code), code.name)
    assert fragment in reply.header["text"]
    assert reply.header.get("re") == re


def test_each_bad_message_gets_its_typed_error_and_the_session_survives(bundle, context):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        expect_error(step(sock, 1, OBS), ErrorCode.NO_SESSION, "send hello first", 1)
        hello(sock, bundle, seq=2)
        cases = [
            ([b"\xc1"], ErrorCode.MALFORMED, "not valid msgpack", None),
            ([msgpack.packb({"v": 9, "type": "step", "seq": 3})], ErrorCode.VERSION_MISMATCH, "version 9", 3),
            ([msgpack.packb({"v": V, "type": "teleport", "seq": 4})], ErrorCode.UNKNOWN_TYPE, "'teleport'", 4),
            ([msgpack.packb({"v": V, "type": "welcome", "seq": 5})], ErrorCode.UNKNOWN_TYPE, "does not accept 'welcome'", 5),
            (wire.encode({"v": V, "type": "action", "seq": 6, "re": 1}, [OBS]), ErrorCode.UNKNOWN_TYPE, "does not accept 'action'", 6),
            (wire.encode({"v": V, "type": "step", "seq": 7, "deadline_us": 1000}, [OBS[:4]]), ErrorCode.BAD_ARRAY, "<f4 (6,)", 7),
            (wire.encode({"v": V, "type": "step", "seq": 8, "deadline_us": 1000}, [OBS.astype(np.float64)]), ErrorCode.BAD_ARRAY, "got <f8(6,)", 8),
            (wire.encode({"v": V, "type": "step", "seq": 9, "deadline_us": 1000}, [np.where(np.arange(6) == 4, np.nan, OBS).astype(np.float32)]),
             ErrorCode.NON_FINITE, "at [4]", 9),
            (wire.encode({"v": V, "type": "step", "seq": 10, "deadline_us": 0}, [OBS]), ErrorCode.MALFORMED, "deadline_us must be positive", 10),
            (wire.encode({"v": V, "type": "step", "seq": 10, "deadline_us": 1000}, [OBS]), ErrorCode.STALE_SEQUENCE, "not above the last seen 10", 10),
            ([msgpack.packb({"v": V, "type": "reset", "seq": 11}), b"junk"], ErrorCode.MALFORMED, "carries 0 array frame", 11),
            ([b"x" * 70_000], ErrorCode.TOO_LARGE, "70000 bytes; the cap is 65536", None),
            ([b"a"] * 12, ErrorCode.MALFORMED, "12 frames", None),
        ]
        for frames, code, fragment, re in cases:
            sock.send_multipart(frames)
            expect_error(recv_error(sock), code, fragment, re)
        good = step(sock, 12, OBS)
        sock.close()
    assert good.header["type"] == "action"
    np.testing.assert_array_equal(good.arrays[0], bundle.act(OBS))


def fixed_layout_step(seq, obs, deadline_us=2_000_000):
    """A step request as the reference client writes it (wire.step_header_layout), not msgpack's shortest form."""
    return [wire.step_header_layout(6).pack(seq, 0, deadline_us), np.asarray(obs, dtype=np.float32).tobytes()]


def test_steps_in_the_fixed_header_layout_get_the_same_checks_and_answers(bundle, context):
    nan_obs = np.where(np.arange(6) == 4, np.nan, OBS).astype(np.float32)
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        sock.send_multipart(fixed_layout_step(1, OBS))
        expect_error(recv(sock), ErrorCode.NO_SESSION, "send hello first", 1)
        hello(sock, bundle, seq=2)
        sock.send_multipart(fixed_layout_step(3, OBS))
        header, action = sock.recv_multipart()
        cases = [
            (fixed_layout_step(3, OBS), ErrorCode.STALE_SEQUENCE, "not above the last seen 3", 3),
            (fixed_layout_step(4, nan_obs), ErrorCode.NON_FINITE, "at [4]", 4),
            (fixed_layout_step(5, OBS, deadline_us=0), ErrorCode.MALFORMED, "deadline_us must be positive", 5),
            (fixed_layout_step(6, OBS[:4]), ErrorCode.BAD_ARRAY, "needs 24 bytes, frame has 16", 6),
            (fixed_layout_step(7, OBS)[:1], ErrorCode.MALFORMED, "carries 1 array frame(s); got 0", 7),
        ]
        for frames, code, fragment, re in cases:
            sock.send_multipart(frames)
            expect_error(recv(sock), code, fragment, re)
        general = step(sock, 8, OBS)
        sock.close()
    # The reply is written in the server's own fixed layout and says the same as the general form.
    assert wire.action_header_layout(3).read(header)[1] == 3
    assert np.frombuffer(action, dtype=np.float32).tobytes() == general.arrays[0].tobytes() == bundle.act(OBS).tobytes()


def test_a_fixed_layout_step_over_the_message_cap_is_too_large(bundle, context):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        hello(sock, bundle)  # ~120 bytes: a cap that lets it through is above a step's 101, so lower it now
        server.config.max_message_bytes = 100
        sock.send_multipart(fixed_layout_step(2, OBS))
        expect_error(recv(sock), ErrorCode.TOO_LARGE, "101 bytes; the cap is 100", 2)  # its 77-byte header is readable
        sock.close()


@pytest.mark.parametrize(
    "change, code, fragment",
    [
        ({"bundle": "welder"}, ErrorCode.UNKNOWN_BUNDLE, "bundle 'welder' not served here (use the manifest name, not the "
                                                         f"directory); served: 'gantry-reach' (gantry-3, spec {GANTRY_HASH[:16]}...)"),
        ({"spec_hash": "0" * 64}, ErrorCode.SPEC_MISMATCH, "spec hash 0000000000000000... differs"),
        ({"robot": {"model": "ur5", "joint_names": ["x", "y", "z"]}}, ErrorCode.ROBOT_MISMATCH, "robot model 'ur5'"),
        ({"robot": {"model": "gantry-3", "joint_names": ["x", "y"]}}, ErrorCode.ROBOT_MISMATCH, "joint names ['x', 'y']"),
        ({"v": 1}, ErrorCode.VERSION_MISMATCH, "protocol version 1 not supported; this peer speaks [2]"),
    ],
)
def test_handshake_mismatches_are_rejected(bundle, context, change, code, fragment):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        send(sock, {"type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash, **change})
        reply = recv_error(sock)
        expect_error(reply, code, fragment, 1)
        assert reply.header["v"] == change.get("v", V)  # a version-1 peer gets its answer in version 1
        expect_error(step(sock, 2, OBS), ErrorCode.NO_SESSION, "send hello first", 2)
        sock.close()
        assert server.sessions == {}


def test_client_raises_on_rejected_handshake(bundle):
    with serving(bundle) as server:
        with BridgeClient(ClientConfig(server.endpoint, "welder", bundle.spec_hash)) as client:
            with pytest.raises(HandshakeRejected, match="UNKNOWN_BUNDLE: bundle 'welder' not served"):
                client.connect(5.0)


def test_client_reads_replies_in_any_msgpack_encoding_and_checks_them(context):
    """The client's fixed-layout reading is only a shortcut: a server (say, one written in C++) that
    writes msgpack's shortest form is understood the same; stale and wrong-size actions are dropped."""
    router = context.socket(zmq.ROUTER)
    router.linger, router.rcvtimeo = 0, TIMEOUT_MS
    port = router.bind_to_random_port("tcp://127.0.0.1")
    limits = SafetyLimits.from_robot_spec(gantry.robot_spec()).to_robot_spec()
    seen_steps, fixed = [], wire.action_header_layout(3)

    def fake_server():
        identity, hello_frame = router.recv_multipart()
        welcome = {"v": V, "type": "welcome", "seq": 1, "re": msgpack.unpackb(hello_frame)["seq"], "bundle": "b",
                   "spec_hash": GANTRY_HASH, "session": "s", "obs_dim": 6, "act_dim": 3, "control_hz": 20.0,
                   "action_kind": "joint_delta", "observation": {"features": GANTRY["observation"]},
                   "action": GANTRY["action"], "limits": limits, "max_message_bytes": 65536}
        router.send_multipart([identity, *wire.encode(welcome)])
        for k in range(3):
            identity, header, obs = router.recv_multipart()
            seen_steps.append(header)
            seq = msgpack.unpackb(header)["seq"]
            action = np.full(3, 0.25 * k, dtype=np.float32)
            if k == 0:  # shortest form
                router.send_multipart([identity, *wire.encode({"v": V, "type": "action", "seq": 2, "re": seq}, [action])])
            elif k == 1:  # fixed layout, after a stale one
                router.send_multipart([identity, fixed.pack(3, seq - 1, 0, 0.0, 0.0, 1), action.tobytes()])
                router.send_multipart([identity, fixed.pack(4, seq, 0, 1.5, 2.5, 1), action.tobytes()])
            else:  # four values where the welcome said three: dropped as malformed, then refused as an action
                four = np.zeros(4, dtype=np.float32).tobytes()
                router.send_multipart([identity, fixed.pack(5, seq, 0, 0.0, 0.0, 1), four])
                router.send_multipart([identity, wire.action_header_layout(4).pack(6, seq, 0, 0.0, 0.0, 1), four])

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    with BridgeClient(ClientConfig(f"tcp://127.0.0.1:{port}", "b", GANTRY_HASH)) as client:
        client.connect(5.0)
        results = [client.step(OBS, deadline_s=2.0) for _ in range(3)]
    thread.join(5)
    router.close()
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert results[0].action.tolist() == [0.0] * 3
    assert results[1].action.tolist() == [0.25] * 3 and (results[1].server_queue_us, results[1].server_infer_us) == (1.5, 2.5)
    assert "an action must be <f4 (3,)" in results[2].error_text
    assert client.counts["stale_replies"] == 1 and client.counts["bad_replies"] == 2
    # What the client sent: its step requests in the fixed layout.
    assert [wire.step_header_layout(6).read(h)[0] for h in seen_steps] == [r.seq for r in results]


def test_deadline_passed_before_inference_is_answered_not_run(bundle, context):
    gated = GatedPolicy(bundle)
    with serving(gated) as server:
        first, late = dealer(context, server.endpoint), dealer(context, server.endpoint)
        hello(first, bundle)
        hello(late, bundle)
        gated.gate.clear()
        send(first, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [OBS])
        assert gated.entered.wait(5)
        send(late, {"type": "step", "seq": 2, "deadline_us": 1_000}, [OBS])  # 1 ms: expires in the queue
        assert wait_for(lambda: all(s.last_seq == 2 for s in server.sessions.values()), 5)
        time.sleep(0.05)
        gated.gate.set()
        assert recv(first).header["type"] == "action"
        expect_error(recv(late), ErrorCode.DEADLINE_EXPIRED, "before inference", 2)
        first.close()
        late.close()
    assert gated.batches == [1]


def test_client_deadline_miss_then_drops_the_late_reply_as_stale(bundle):
    gated = GatedPolicy(bundle)
    with serving(gated) as server:
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash)) as client:
            client.connect(5.0)
            gated.gate.clear()
            missed = client.step(OBS, deadline_s=0.05)
            gated.gate.set()
            time.sleep(0.1)  # the late action is now waiting in the client's socket
            next_ok = client.step(OBS * 2, deadline_s=2.0)
    assert missed.status == "deadline" and missed.action is None
    assert next_ok.status == "ok"
    np.testing.assert_array_equal(next_ok.action, bundle.act(OBS * 2))
    assert client.counts["stale_replies"] == 1
    assert client.stats.deadline_misses == 1 and client.stats.count == 1


def test_session_table_full_answers_busy(bundle, context):
    with serving(bundle, max_sessions=2) as server:
        socks = [dealer(context, server.endpoint) for _ in range(3)]
        assert [hello(s, bundle).header["type"] for s in socks[:2]] == ["welcome", "welcome"]
        expect_error(hello(socks[2], bundle), ErrorCode.BUSY, "2 controllers connected", 1)
        for sock in socks:
            sock.close()


def test_a_full_table_makes_room_by_evicting_its_longest_silent_session(bundle, context):
    # Sessions opened and dropped without bye held every slot for the whole session timeout (10 s): a soak's hostile
    # client kept all 64 taken, and controllers that came back waited. A session that steps keeps its slot.
    with serving(bundle, max_sessions=2, crowded_idle_s=0.5, session_timeout_s=30.0) as server:
        active, silent, newcomer = (dealer(context, server.endpoint) for _ in range(3))
        assert hello(active, bundle).header["type"] == hello(silent, bundle).header["type"] == "welcome"
        expect_error(hello(newcomer, bundle), ErrorCode.BUSY, "2 controllers connected", 1)  # nobody silent long enough
        for seq in range(2, 9):  # 0.7 s: `active` steps on, `silent` says nothing
            time.sleep(0.1)
            assert step(active, seq, OBS).header["type"] == "action"
        assert hello(newcomer, bundle, seq=2).header["type"] == "welcome"
        assert step(active, 9, OBS).header["type"] == "action"
        expect_error(step(silent, 2, OBS), ErrorCode.NO_SESSION, "send hello first", 2)
        for sock in (active, silent, newcomer):
            sock.close()


def test_client_retries_busy_until_a_slot_frees(bundle, context):
    # A controller that vanished without bye keeps its slot until the session expires. The reference client used to
    # take that BUSY as final: HandshakeRejected at connect, and out of step() when a session dropped mid-run.
    with serving(bundle, max_sessions=1, session_timeout_s=1.0, telemetry_period_s=0.1) as server:
        gone = dealer(context, server.endpoint)
        assert hello(gone, bundle).header["type"] == "welcome"
        gone.close()  # no bye: its session holds the only slot for a second
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash)) as client:
            client.connect(5.0)
            assert client.counts["busy"] >= 1
            assert client.step(OBS, 1.0).status == "ok"
            client.drop_session("no reply for 1 s")  # a hiccup: a fresh socket, while the old session still holds the slot
            statuses = []
            end = time.monotonic() + 5
            while time.monotonic() < end and (not statuses or statuses[-1] != "ok"):
                statuses.append(client.step(OBS, 0.1).status)
        assert statuses[0] == "disconnected" and statuses[-1] == "ok"
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash)) as first, \
                BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash)) as second:
            first.connect(5.0)
            with pytest.raises(BridgeUnavailable, match="answered BUSY .1 controllers connected"):
                second.connect(0.3)


def test_silent_sessions_expire(bundle, context):
    with serving(bundle, session_timeout_s=0.2, telemetry_period_s=0.1) as server:
        sock = dealer(context, server.endpoint)
        hello(sock, bundle)
        time.sleep(0.6)
        expect_error(step(sock, 2, OBS), ErrorCode.NO_SESSION, "send hello first", 2)
        sock.close()


def test_frame_over_the_transport_cap_drops_only_that_connection(bundle, context):
    with serving(bundle, transport_max_bytes=100_000) as server:
        good, bad = dealer(context, server.endpoint), dealer(context, server.endpoint)
        hello(good, bundle)
        hello(bad, bundle)
        bad.send_multipart([b"x" * 200_000])  # libzmq disconnects this peer; nothing is answered
        bad.rcvtimeo = 500
        with pytest.raises(zmq.Again):
            bad.recv_multipart()
        assert step(good, 2, OBS).header["type"] == "action"
        good.close()
        bad.close()


def _zmtp_dealer_that_goes_silent(endpoint: str, hello_frame: bytes) -> socket.socket:
    """A TCP peer that does the ZMTP 3.0 handshake as a DEALER (NULL mechanism), sends one message and then
    never sends anything again and never closes: what the server sees of a controller whose host lost power."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    peer = socket.create_connection((host, int(port)), timeout=5)
    peer.sendall(b"\xff" + b"\0" * 7 + b"\x01\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\x00" + b"\0" * 31)
    greeting = b""
    while len(greeting) < 64:
        greeting += peer.recv(64 - len(greeting))
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    peer.sendall(bytes([0x04, len(ready)]) + ready + bytes([0x00, len(hello_frame)]) + hello_frame)
    return peer


def test_a_peer_that_goes_silent_without_closing_is_disconnected(bundle):
    # No FIN ever comes from a host that lost power; without ZMTP heartbeats from the server its connection (a file
    # descriptor and a queue) was kept for ever, one more each time a controller was power-cycled.
    hello_frame = msgpack.packb({"v": V, "type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash})
    with serving(bundle, peer_heartbeat_ms=100, peer_timeout_ms=300) as server:
        peer = _zmtp_dealer_that_goes_silent(server.endpoint, hello_frame)
        received, closed_after = b"", None
        start = time.monotonic()
        while time.monotonic() - start < 5:
            data = peer.recv(65536)  # the welcome, then the server's PINGs, which this peer never answers
            if not data:
                closed_after = time.monotonic() - start
                break
            received += data
        peer.close()
    assert b"welcome" in received
    assert closed_after is not None and closed_after < 3, "the server kept a silent peer's connection open"


def test_replies_to_vanished_controllers_are_dropped(bundle, context):
    gated = GatedPolicy(bundle)
    with serving(gated) as server:
        gone = dealer(context, server.endpoint)
        hello(gone, bundle)
        gated.gate.clear()
        send(gone, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [OBS])
        assert gated.entered.wait(5)
        gone.close()
        time.sleep(0.5)  # the server's libzmq sees the TCP close and forgets the peer
        gated.gate.set()
        survivor = dealer(context, server.endpoint)
        hello(survivor, bundle)
        assert step(survivor, 2, OBS).header["type"] == "action"
        survivor.close()
        time.sleep(0.1)
        server.stats.swap()
    assert server.stats.totals["dropped_replies"] == 1


def test_shutdown_says_bye_and_the_client_notices(bundle):
    with BridgeClient(ClientConfig("tcp://127.0.0.1:1", bundle.name, bundle.spec_hash)) as unused:
        assert unused.ensure_session(0.0) is False  # nothing listens there; never blocks
    with serving(bundle) as server:
        client = BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash))
        client.connect(5.0)
    result = client.step(OBS, deadline_s=0.3)  # the bye is read while waiting
    assert result.status == "disconnected" and not client.connected
    assert any(kind == "session_dropped" and "server said bye" in detail for _, kind, detail in client.events)
    client.close()


# ------------------------------------------------------------------ telemetry


def telemetry_subscriber(context, server, topic: bytes):
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvtimeo = TIMEOUT_MS
    sub.subscribe(topic)
    sub.connect(server.telemetry_endpoint)
    time.sleep(0.3)  # slow joiner: let the subscription reach the PUB socket
    return sub


def test_telemetry_publishes_sessions_latency_errors_actions_and_client_stats(bundle, context):
    with serving(bundle, telemetry_period_s=0.1) as server:
        sub = telemetry_subscriber(context, server, b"")
        sock = dealer(context, server.endpoint)
        hello(sock, bundle, client="cell-1")
        step(sock, 2, OBS)
        sock.send_multipart([b"\xc1"])
        recv(sock)
        send(sock, {"type": "heartbeat", "seq": 3, "stats": {"safety": {"velocity": 4}}})
        recv(sock)
        seen: dict[str, list] = {}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not {"session", "error", "safety", "actions"} <= seen.keys():
            topic, payload = sub.recv_multipart()
            seen.setdefault(topic.decode(), []).append(msgpack.unpackb(payload))
        sock.close()
        sub.close()
    assert seen["session"][0]["event"] == "hello" and seen["session"][0]["client"] == "cell-1"
    assert seen["error"][0]["name"] == "MALFORMED"
    assert seen["safety"][0]["stats"] == {"safety": {"velocity": 4}}
    (last,) = seen["actions"][-1]["last"].values()
    assert last["seq"] == 2
    np.testing.assert_allclose(last["action"], bundle.act(OBS), rtol=0, atol=1e-7)
    served = [m for m in seen["latency"] if m["counts"].get("served")]
    assert served and served[0]["counts"]["served"] == 1 and served[0]["batch_max"] == 1


def test_log_and_telemetry_show_a_long_refusal_text_clipped(bundle, context, caplog):
    # A refusal's text can echo a whole field (here a 60 000-character type): the log, one line a second per code,
    # grew 180 KB a second from one client sending three such messages; the reply still carries the whole text.
    with serving(bundle, telemetry_period_s=0.1) as server:
        sub = telemetry_subscriber(context, server, b"error")
        sock = dealer(context, server.endpoint)
        send(sock, {"type": "x" * 60_000, "seq": 1})
        reply = recv(sock).header
        _, payload = sub.recv_multipart()
        sock.close()
        sub.close()
    assert reply["name"] == "UNKNOWN_TYPE" and len(reply["text"]) > 60_000
    event = msgpack.unpackb(payload)
    assert event["name"] == "UNKNOWN_TYPE" and len(event["text"]) < 400 and event["text"].endswith("more characters)")
    (line,) = [r.getMessage() for r in caplog.records if "rejected message" in r.getMessage()]
    assert len(line) < 450 and line.startswith("rejected message: UNKNOWN_TYPE: unknown message type 'xxx")


# ------------------------------------------------------------------ configuration


def test_refuses_a_network_bind_without_keys(bundle):
    with pytest.raises(ServerConfigError, match="tcp://0.0.0.0:5555 is not loopback: pass --curve-secret/--allow"):
        BridgeServer([bundle], ServerConfig(bind="tcp://0.0.0.0:5555"))


def test_refuses_two_bundles_with_one_name(bundle):
    with pytest.raises(ServerConfigError, match=r"two bundles share the name \['gantry-reach'\]"):
        BridgeServer([bundle, bundle], ServerConfig(bind="tcp://127.0.0.1:*"))


def test_refuses_a_bundle_without_robot_limits(bundle):
    bare = GatedPolicy(bundle)
    bare.manifest = {**bundle.manifest, "robot": {"model": "toy"}}
    with pytest.raises(BundleSpecError, match="manifest robot.joint_names: expected a non-empty list .* safety limits"):
        BridgeServer([bare], ServerConfig(bind="tcp://127.0.0.1:*"))


def test_refuses_a_bundle_whose_spec_hash_is_not_its_manifests(bundle):
    """Controllers recompute the hash from the welcome's sections: a server must never announce another."""
    stale = GatedPolicy(bundle)
    stale.spec_hash = "0" * 64
    with pytest.raises(BundleSpecError, match=r"spec_hash 0000000000000000\.\.\. is not the hash of its manifest's "
                                              r"observation/action and control_hz \(470556e8"):
        BridgeServer([stale], ServerConfig(bind="tcp://127.0.0.1:*"))


def test_client_bye_ends_the_session_on_the_server(bundle):
    with serving(bundle) as server:
        client = BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash))
        client.connect(5.0)
        assert len(server.sessions) == 1
        client.close()
        assert wait_for(lambda: not server.sessions, 3)


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:*", True), ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
    ("ipc:///tmp/genba.sock", True), ("inproc://bridge", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://192.168.1.20:5555", False), ("tcp://[::]:5555", False), ("tcp://cell-7:5555", False),
])
def test_what_counts_as_loopback(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback
