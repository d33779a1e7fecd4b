"""The gaps a controller vendor hit writing a controller from docs/bridge-protocol.md alone, settled
over real sockets against a server serving a real gantry bundle: which bundle name, hello without
one, the welcome's layout, per-session sequence numbers, `re` on every error whose seq is readable,
the code for each odd message, reset and heartbeats."""

from __future__ import annotations

import copy
import shutil
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from bridge_support import TIMEOUT_MS, GatedPolicy, context, dealer, serving  # noqa: F401 (context: a fixture)

from bridge import gantry
from bridge import protocol as wire
from bridge.client import BridgeClient, ClientConfig, ClientConfigError, HandshakeRejected
from bridge.limits import SafetyLimits
from bridge.protocol import ErrorCode
from bridge.spec import spec_hash
from policies.bundle import load_bundle

V = wire.PROTOCOL_VERSION
OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)
GANTRY = gantry.feature_spec()


def send(sock, header, arrays=()):
    sock.send_multipart(wire.encode({"v": V, "t_ns": 0, **header}, arrays))


def recv(sock):
    return wire.decode(sock.recv_multipart())


def ask(sock, header, arrays=()):
    send(sock, header, arrays)
    return recv(sock).header


def expect_error(header, code, fragment, re):
    assert header["type"] == "error", header
    assert (header["code"], header["name"]) == (int(code), code.name), header
    assert fragment in header["text"], header["text"]
    assert header.get("re") == re, header


def step(sock, seq, deadline_us=2_000_000):
    return ask(sock, {"type": "step", "seq": seq, "deadline_us": deadline_us}, [OBS])


# ------------------------------------------------------------------ 1. which bundle


def test_a_hello_names_the_manifest_name_not_the_directory(bundle_dir, context, tmp_path):
    moved = load_bundle(shutil.copytree(bundle_dir, tmp_path / "cell7-policy"))
    assert moved.name == "gantry-reach"
    with serving(moved) as server:
        sock = dealer(context, server.endpoint)
        reply = ask(sock, {"type": "hello", "seq": 1, "bundle": "cell7-policy", "spec_hash": moved.spec_hash})
        expect_error(reply, ErrorCode.UNKNOWN_BUNDLE, "bundle 'cell7-policy' not served here (use the manifest name, not "
                     f"the directory); served: 'gantry-reach' (gantry-3, spec {moved.spec_hash[:16]}...)", 1)
        welcome = ask(sock, {"type": "hello", "seq": 2, "bundle": "gantry-reach", "spec_hash": moved.spec_hash})
        sock.close()
    assert (welcome["type"], welcome["bundle"]) == ("welcome", "gantry-reach")


def test_a_hello_without_a_bundle_gets_the_one_with_its_spec_hash(bundle, context):
    controller_hash = spec_hash(GANTRY["observation"], GANTRY["action"], GANTRY["control_hz"])  # from its own description
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        welcome = ask(sock, {"type": "hello", "seq": 1, "spec_hash": controller_hash})
        action = step(sock, 2)
        sock.close()
    assert (welcome["type"], welcome["bundle"], welcome["spec_hash"]) == ("welcome", "gantry-reach", bundle.spec_hash)
    assert action["type"] == "action" and action["re"] == 2


def test_a_hello_without_a_bundle_and_no_or_several_matches_is_refused(bundle, context):
    twin = GatedPolicy(bundle)
    twin.name = "gantry-twin"  # the same policy under a second name: two bundles with one spec hash
    with serving(bundle, twin) as server:
        sock = dealer(context, server.endpoint)
        nothing = ask(sock, {"type": "hello", "seq": 1, "spec_hash": "0" * 64})
        several = ask(sock, {"type": "hello", "seq": 2, "spec_hash": bundle.spec_hash})
        named = ask(sock, {"type": "hello", "seq": 3, "bundle": "gantry-twin", "spec_hash": bundle.spec_hash})
        sock.close()
    prefix = bundle.spec_hash[:16]
    expect_error(nothing, ErrorCode.SPEC_MISMATCH, f"no served bundle has spec hash 0000000000000000...; served: "
                 f"'gantry-reach' (gantry-3, spec {prefix}...), 'gantry-twin' (gantry-3, spec {prefix}...)", 1)
    expect_error(several, ErrorCode.UNKNOWN_BUNDLE, f"2 served bundles have spec hash {prefix}...: name one in "
                 "hello.bundle: ['gantry-reach', 'gantry-twin']", 2)
    assert (named["type"], named["bundle"]) == ("welcome", "gantry-twin")


def test_client_without_a_bundle_name_connects_by_spec_hash(bundle):
    with serving(bundle) as server:
        with BridgeClient(ClientConfig(server.endpoint, None, bundle.spec_hash)) as by_position, \
                BridgeClient(ClientConfig(server.endpoint, spec_hash=bundle.spec_hash)) as by_keyword:
            welcomes = [by_position.connect(5.0), by_keyword.connect(5.0)]
            result = by_keyword.step(OBS, deadline_s=2.0)
    assert [w.bundle for w in welcomes] == ["gantry-reach"] * 2
    assert result.status == "ok"
    np.testing.assert_array_equal(result.action, bundle.act(OBS))


def test_client_config_needs_a_spec_hash():
    with pytest.raises(ClientConfigError, match="ClientConfig.spec_hash is required"):
        ClientConfig("tcp://127.0.0.1:5555", "gantry-reach")


# ------------------------------------------------------------------ 3. the welcome's layout


def test_client_welcome_carries_the_layout(bundle):
    with serving(bundle) as server:
        with BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash)) as client:
            welcome = client.connect(5.0)
    assert welcome.observation == bundle.manifest["observation"] and welcome.action == bundle.manifest["action"]
    assert welcome.action["kind"] == welcome.action_kind == "joint_delta"
    assert [f["size"] for f in welcome.observation["features"]] == [3, 3]


def fake_server(context, welcome_change):
    """A ROUTER that answers one hello with the gantry's welcome, changed by ``welcome_change``."""
    router = context.socket(zmq.ROUTER)
    router.linger, router.rcvtimeo = 0, TIMEOUT_MS
    port = router.bind_to_random_port("tcp://127.0.0.1")
    observation = {"dim": 6, "features": [{**f, "low": [-1.0] * 3, "high": [1.0] * 3} for f in GANTRY["observation"]]}
    welcome = {"v": V, "type": "welcome", "seq": 1, "bundle": "gantry-reach",
               "spec_hash": spec_hash(GANTRY["observation"], GANTRY["action"], 20.0), "session": "s", "obs_dim": 6,
               "act_dim": 3, "control_hz": 20.0, "action_kind": "joint_delta", "observation": observation,
               "action": GANTRY["action"], "limits": SafetyLimits.from_robot_spec(gantry.robot_spec()).to_robot_spec(),
               "max_message_bytes": 65536}
    welcome = copy.deepcopy(welcome)  # changes must not reach GANTRY
    welcome_change(welcome)

    def serve():
        try:
            identity, frame = router.recv_multipart()
        except zmq.Again:
            return
        router.send_multipart([identity, *wire.encode({**welcome, "re": msgpack.unpackb(frame)["seq"]})])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return router, thread, f"tcp://127.0.0.1:{port}", welcome["spec_hash"]


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda w: w.update(control_hz=25.0), "welcome contradicts itself: its observation/action/control_hz hash to"),
        (lambda w: w["observation"]["features"][0].update(unit="mm"), "welcome contradicts itself"),
        (lambda w: w.update(obs_dim=7), "features add up to [6, 3] values of action kind 'joint_delta', it announces [7, 3]"),
        (lambda w: w.update(action_kind="ee_delta"), "it announces [6, 3] and 'ee_delta'"),
        (lambda w: w["action"].update(features=[{"name": "joint delta", "size": 3, "unit": "m"}]),
         "welcome observation/action cannot be hashed: action feature 0 name 'joint delta' contains whitespace"),
        (lambda w: w.update(bundle="welder"), "welcome names bundle 'welder'; we asked for 'gantry-reach'"),
    ],
    ids=["rate", "unit", "obs-dim", "kind", "unhashable", "other-bundle"],
)
def test_client_refuses_a_welcome_that_contradicts_itself(context, change, fragment):
    router, thread, endpoint, hash_ = fake_server(context, change)
    with BridgeClient(ClientConfig(endpoint, "gantry-reach", hash_), context=context) as client:
        with pytest.raises(HandshakeRejected, match="SPEC_MISMATCH") as info:
            client.connect(5.0)
        assert fragment in info.value.text
        assert not client.connected and client.counts["failed_handshakes"] == 1
    thread.join(5)
    router.close()


def test_client_that_named_no_bundle_accepts_any_name(context):
    router, thread, endpoint, hash_ = fake_server(context, lambda w: w.update(bundle="cell-7-pick"))
    with BridgeClient(ClientConfig(endpoint, None, hash_), context=context) as client:
        assert client.connect(5.0).bundle == "cell-7-pick"
    thread.join(5)
    router.close()


# ------------------------------------------------------------------ 4. sequence numbers per session


def test_sequence_numbers_are_checked_per_session(bundle, context):
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        assert ask(sock, {"type": "hello", "seq": 100, "bundle": bundle.name, "spec_hash": bundle.spec_hash})["type"] == "welcome"
        expect_error(step(sock, 50), ErrorCode.STALE_SEQUENCE, "seq 50 is not above the last seen 100", 50)
        expect_error(step(sock, 100), ErrorCode.STALE_SEQUENCE, "seq 100 is not above the last seen 100", 100)
        # A new hello starts a new session and may use any seq; the next messages must be above it.
        again = ask(sock, {"type": "hello", "seq": 5, "bundle": bundle.name, "spec_hash": bundle.spec_hash})
        served = step(sock, 6)
        beat = ask(sock, {"type": "heartbeat", "seq": 6})
        sock.close()
    assert again["type"] == "welcome" and again["re"] == 5
    assert (served["type"], served["re"]) == ("action", 6)
    expect_error(beat, ErrorCode.STALE_SEQUENCE, "seq 6 is not above the last seen 6", 6)


# ------------------------------------------------------------------ 5-8. the code (and re) for each odd message


def test_each_odd_message_gets_its_documented_code_and_re(bundle, context):
    header = lambda seq, **extra: msgpack.packb({"v": V, "type": "step", "seq": seq, "t_ns": 0, "deadline_us": 1000,
                                                 "arrays": [["<f4", [6]]], **extra})
    obs = OBS.tobytes()
    cases = [
        # TOO_LARGE and too many frames: the header is readable, so the error answers its seq.
        ([header(3), b"\0" * 70_000], ErrorCode.TOO_LARGE, "is 70", 3),
        ([header(4)] + [obs] * 9, ErrorCode.MALFORMED, "10 frames; at most 9 allowed", 4),
        # ... but not a header frame that is itself over the cap, nor one without a readable seq.
        ([msgpack.packb({"v": V, "type": "step", "seq": 5, "pad": "x" * 70_000})], ErrorCode.TOO_LARGE, "the cap is 65536", None),
        ([b"\xc1"] + [obs] * 9, ErrorCode.MALFORMED, "10 frames", None),
        # Types only a server sends: UNKNOWN_TYPE before their (missing) fields are looked at.
        ([msgpack.packb({"v": V, "type": "welcome", "seq": 6})], ErrorCode.UNKNOWN_TYPE, "a server does not accept 'welcome'", 6),
        ([msgpack.packb({"v": V, "type": "error", "seq": 7})], ErrorCode.UNKNOWN_TYPE, "a server does not accept 'error'", 7),
        (wire.encode({"v": V, "type": "action", "seq": 8, "re": 1}, [OBS[:3]]), ErrorCode.UNKNOWN_TYPE, "does not accept 'action'", 8),
        # Extension values in a field nobody knows, a timestamp included.
        ([header(9, future=msgpack.ExtType(42, b"\x01\x02")), obs], ErrorCode.MALFORMED, "msgpack extension value", 9),
        ([header(10, future=msgpack.Timestamp(1_700_000_000, 0)), obs], ErrorCode.MALFORMED, "extension value; extension types (timestamps included)", 10),
        # deadline_us 0, nine array frames, bytes after the header map.
        ([header(11, deadline_us=0), obs], ErrorCode.MALFORMED, "deadline_us must be positive, got 0", 11),
        ([header(12, arrays=[["<f4", [6]]] * 9)] + [obs] * 9, ErrorCode.MALFORMED, "10 frames; at most 9 allowed", 12),
        ([header(13) + b"\x00", obs], ErrorCode.MALFORMED, "header frame has 1 byte(s) after the msgpack map", 13),
        # Robot fields of the wrong type in a hello.
        (wire.encode({"v": V, "type": "hello", "seq": 14, "spec_hash": bundle.spec_hash, "robot": {"joint_names": "xyz"}}),
         ErrorCode.MALFORMED, "robot.joint_names must be an array of str", 14),
        (wire.encode({"v": V, "type": "hello", "seq": 15, "spec_hash": bundle.spec_hash, "robot": {"model": 3}}),
         ErrorCode.MALFORMED, "robot.model must be str, got int", 15),
        # A version-1 controller.
        (wire.encode({"v": 1, "type": "hello", "seq": 16, "bundle": bundle.name, "spec_hash": "0" * 64}),
         ErrorCode.VERSION_MISMATCH, "protocol version 1 not supported; this peer speaks [2]", 16),
    ]
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        assert ask(sock, {"type": "hello", "seq": 2, "bundle": bundle.name, "spec_hash": bundle.spec_hash})["type"] == "welcome"
        for frames, code, fragment, re in cases:
            sock.send_multipart(frames)
            reply = msgpack.unpackb(sock.recv_multipart()[0])  # plain msgpack: the version-1 answer is in version 1
            expect_error(reply, code, fragment, re)
            assert reply["v"] == (1 if code == ErrorCode.VERSION_MISMATCH else V)
        good = step(sock, 17)
        sock.close()
    assert good["type"] == "action" and good["re"] == 17  # the session survived all of it


# ------------------------------------------------------------------ 9. reset, heartbeats, pacing


class CountingPolicy(GatedPolicy):
    def __init__(self, bundle):
        super().__init__(bundle)
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        super().reset()


def test_reset_calls_the_policy_and_echoes_re(bundle, context):
    policy = CountingPolicy(bundle)
    with serving(policy) as server:
        sock = dealer(context, server.endpoint)
        ask(sock, {"type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash})
        plain = ask(sock, {"type": "reset", "seq": 2})
        numbered = ask(sock, {"type": "reset", "seq": 3, "episode": 7})
        bad_type = ask(sock, {"type": "reset", "seq": 4, "episode": "seven"})
        negative = ask(sock, {"type": "reset", "seq": 5, "episode": -1})
        sock.close()
    for reply, seq in ((plain, 2), (numbered, 3)):
        assert (reply["type"], reply["re"], reply["v"]) == ("reset", seq, V)
        assert set(reply) == {"v", "type", "seq", "t_ns", "re"}
    expect_error(bad_type, ErrorCode.MALFORMED, "header field 'episode' must be int, got str", 4)
    expect_error(negative, ErrorCode.MALFORMED, "header field 'episode' must be an unsigned 64-bit integer, got -1", 5)
    assert policy.resets == 2  # refused resets never reach the policy


def test_heartbeats_keep_a_quiet_session_alive(bundle, context):
    with serving(bundle, session_timeout_s=0.3, telemetry_period_s=0.05) as server:
        quiet, beating = dealer(context, server.endpoint), dealer(context, server.endpoint)
        for sock in (quiet, beating):
            ask(sock, {"type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash})
        for seq in range(2, 10):
            time.sleep(0.1)
            assert ask(beating, {"type": "heartbeat", "seq": seq, "stats": {"safety": {"hold": 0}}})["re"] == seq
        alive, expired = step(beating, 10), step(quiet, 10)
        quiet.close()
        beating.close()
    assert alive["type"] == "action"
    expect_error(expired, ErrorCode.NO_SESSION, "send hello first", 10)


def test_the_server_does_not_pace_steps(bundle, context):
    """Faster than control_hz (20 Hz: 50 ms) is allowed: 20 steps back to back are all answered at once."""
    with serving(bundle) as server:
        sock = dealer(context, server.endpoint)
        ask(sock, {"type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash})
        start = time.monotonic()
        replies = [step(sock, seq) for seq in range(2, 22)]
        elapsed = time.monotonic() - start
        sock.close()
    assert [r["type"] for r in replies] == ["action"] * 20
    assert elapsed < 20 / bundle.control_hz / 2  # well under the 1 s that 20 control periods take
