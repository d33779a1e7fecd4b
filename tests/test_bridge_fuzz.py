"""10,000 malformed messages against a server in its own process, while a good controller is served.

Every malformed message must be answered with the documented typed error (or, for frames over
the transport cap, dropped with the connection), the server must not crash or grow, and the
good controller must keep getting correct actions throughout.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from bridge import protocol as wire
from bridge.client import BridgeClient, ClientConfig
from bridge.protocol import ErrorCode
from genba.server_process import ServerProcess, stop_process
from policies.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 10_000
WINDOW = 50  # messages in flight per fuzzing socket
OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)
V = wire.PROTOCOL_VERSION


@pytest.fixture
def server(bundle_dir, tmp_path):
    with open(tmp_path / "server.log", "w") as log:
        server = ServerProcess([bundle_dir], "--telemetry", "off", "--device", "cpu", stderr=log)
    with server:
        yield server.proc, server.ready, tmp_path / "server.log"


class Fuzzer:
    """Builds malformed messages; each comes with the error code the server must answer."""

    def __init__(self, bundle, rng: np.random.Generator) -> None:
        self.bundle, self.rng = bundle, rng
        self.seq = 1  # the session socket's last used seq (its hello was 1)
        # The last seq the server has taken as the session's: a step passes the sequence check before
        # its arrays, values and deadline are checked; a refused hello or an undecodable header never
        # reaches it. A replay must be at or below this one to be stale.
        self.seen = 1
        self.fixed = wire.step_header_layout(bundle.obs_dim)  # the reference client's step header, read by a shortcut

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def step_header(self, seq=None, **change):
        return {"v": V, "type": "step", "seq": self.next_seq() if seq is None else seq, "t_ns": 0, "deadline_us": 100_000, **change}

    def make(self, kind: str) -> tuple[list[bytes], set[int]]:
        frames, codes = self._make(kind)
        if kind in PASS_THE_SEQUENCE_CHECK:
            self.seen = self.seq
        return frames, codes

    def _make(self, kind: str) -> tuple[list[bytes], set[int]]:
        rng, f32 = self.rng, np.float32
        if kind == "random_bytes":
            frames = [rng.bytes(int(rng.integers(0, 300))) for _ in range(int(rng.integers(1, 4)))]
            return frames, {ErrorCode.MALFORMED, ErrorCode.VERSION_MISMATCH, ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_ARRAY}
        if kind == "wrong_frame_count":
            count = int(rng.choice([0, 2, 3]))
            frames = [msgpack.packb({**self.step_header(), "arrays": [["<f4", [6]]] * count})] + [OBS.tobytes()] * count
            return frames, {ErrorCode.MALFORMED}
        if kind == "too_many_frames":
            return [msgpack.packb(self.step_header())] + [b"x"] * int(rng.integers(9, 30)), {ErrorCode.MALFORMED}
        if kind == "wrong_types":
            field, value = [("seq", "7"), ("deadline_us", 1.5), ("v", True), ("type", 3), ("t_ns", "now"), ("deadline_us", None)][
                int(rng.integers(6))]
            header = {**self.step_header(), field: value}
            return wire.encode(header, [OBS]), {ErrorCode.MALFORMED}
        if kind == "wrong_size":
            n = int(rng.choice([0, 5, 7, 60]))
            return wire.encode(self.step_header(), [np.ones(n, f32)]), {ErrorCode.BAD_ARRAY}
        if kind == "lying_descriptor":
            header = {**self.step_header(), "arrays": [["<f4", [6]]]}
            return [msgpack.packb(header), OBS.tobytes()[: int(rng.integers(0, 23))]], {ErrorCode.BAD_ARRAY}
        if kind == "wrong_dtype":
            dtype = [np.float64, np.int32, np.uint8][int(rng.integers(3))]
            return wire.encode(self.step_header(), [OBS.astype(dtype)]), {ErrorCode.BAD_ARRAY}
        if kind == "non_finite":
            obs = OBS.copy()
            obs[int(rng.integers(6))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
            return wire.encode(self.step_header(), [obs]), {ErrorCode.NON_FINITE}
        if kind == "oversized":
            return [msgpack.packb(self.step_header()), b"\0" * int(rng.integers(70_000, 200_000))], {ErrorCode.TOO_LARGE}
        if kind == "wrong_version":
            version = int(rng.integers(1, 100))
            return wire.encode({**self.step_header(), "v": version if version != V else 1}, [OBS]), {ErrorCode.VERSION_MISMATCH}
        if kind == "unknown_bundle":
            header = {"v": V, "type": "hello", "seq": self.next_seq(), "bundle": f"nope-{rng.integers(1000)}", "spec_hash": "0" * 64}
            return wire.encode(header), {ErrorCode.UNKNOWN_BUNDLE}
        if kind == "spec_mismatch":
            header = {"v": V, "type": "hello", "seq": self.next_seq(), "bundle": self.bundle.name, "spec_hash": "f" * 64}
            if rng.integers(2):  # without a bundle name: no served bundle has that hash
                del header["bundle"]
            return wire.encode(header), {ErrorCode.SPEC_MISMATCH}
        if kind == "replayed_seq":
            old = int(rng.integers(1, self.seen + 1))
            return wire.encode(self.step_header(seq=old), [OBS]), {ErrorCode.STALE_SEQUENCE}
        # Well-formed fixed-layout headers (the server's shortcut) with what its remaining checks must catch.
        if kind == "fixed_non_finite":
            obs = OBS.copy()
            obs[int(rng.integers(6))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
            return [self.fixed.pack(self.next_seq(), 0, 100_000), obs.tobytes()], {ErrorCode.NON_FINITE}
        if kind == "fixed_replayed_seq":
            return [self.fixed.pack(int(rng.integers(1, self.seen + 1)), 0, 100_000), OBS.tobytes()], {ErrorCode.STALE_SEQUENCE}
        if kind == "fixed_wrong_size":
            n = int(rng.choice([0, 5, 7, 60]))
            return [self.fixed.pack(self.next_seq(), 0, 100_000), np.ones(n, f32).tobytes()], {ErrorCode.BAD_ARRAY}
        if kind == "fixed_zero_deadline":
            return [self.fixed.pack(self.next_seq(), 0, 0), OBS.tobytes()], {ErrorCode.MALFORMED}
        if kind == "unknown_type":
            return wire.encode({"v": V, "type": "rm -rf", "seq": self.next_seq()}), {ErrorCode.UNKNOWN_TYPE}
        if kind == "controller_sent_server_type":  # a type only a server sends, fields missing: the type is refused first
            kind_sent = ["welcome", "action", "error"][int(rng.integers(3))]
            return [msgpack.packb({"v": V, "type": kind_sent, "seq": self.next_seq()})], {ErrorCode.UNKNOWN_TYPE}
        if kind == "extension_value":
            value = [msgpack.ExtType(int(rng.integers(0, 128)), rng.bytes(int(rng.integers(0, 9)))), msgpack.Timestamp(1, 2)][
                int(rng.integers(2))]
            return wire.encode({**self.step_header(), "future": value}, [OBS]), {ErrorCode.MALFORMED}
        if kind == "trailing_bytes":
            frames = wire.encode(self.step_header(), [OBS])
            return [frames[0] + rng.bytes(int(rng.integers(1, 9))), frames[1]], {ErrorCode.MALFORMED}
        raise ValueError(kind)


PASS_THE_SEQUENCE_CHECK = {"wrong_frame_count", "wrong_size", "lying_descriptor", "wrong_dtype", "non_finite",
                           "fixed_non_finite", "fixed_wrong_size", "fixed_zero_deadline"}
KINDS = ["random_bytes", "wrong_frame_count", "too_many_frames", "wrong_types", "wrong_size", "lying_descriptor",
         "wrong_dtype", "non_finite", "oversized", "wrong_version", "unknown_bundle", "spec_mismatch", "replayed_seq",
         "unknown_type", "fixed_non_finite", "fixed_replayed_seq", "fixed_wrong_size", "fixed_zero_deadline",
         "controller_sent_server_type", "extension_value", "trailing_bytes"]
# Kinds whose header seq is readable although the message is refused: the error must answer it (re).
ANSWERS_SEQ = {"wrong_frame_count", "too_many_frames", "wrong_size", "lying_descriptor", "wrong_dtype", "non_finite",
               "oversized", "wrong_version", "unknown_bundle", "spec_mismatch", "replayed_seq", "unknown_type",
               "fixed_non_finite", "fixed_replayed_seq", "fixed_wrong_size", "fixed_zero_deadline",
               "controller_sent_server_type", "extension_value", "trailing_bytes"}


def header_seq(frame: bytes) -> int:
    """The seq of a header frame as a reader that tolerates anything would find it (test side)."""
    unpacker = msgpack.Unpacker(ext_hook=lambda code, data: None)
    unpacker.feed(frame)
    return next(unpacker)["seq"]


def good_controller(endpoint, bundle, stop: threading.Event, results: list) -> None:
    expected = bundle.act(OBS)
    with BridgeClient(ClientConfig(endpoint, bundle.name, bundle.spec_hash)) as client:
        client.connect(10.0)
        while not stop.is_set():
            result = client.step(OBS, deadline_s=1.0)
            correct = result.action is not None and np.array_equal(result.action, expected)
            results.append((time.monotonic(), result.status, correct))
            time.sleep(0.02)


def dealer(context, endpoint, rcvtimeo=5000):
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = rcvtimeo
    sock.sndtimeo = 5000
    sock.connect(endpoint)
    return sock


def test_ten_thousand_malformed_messages(server, bundle_dir):
    proc, ready, log_path = server
    endpoint = ready["endpoint"]
    bundle = load_bundle(bundle_dir)
    rng = np.random.default_rng(1234)
    fuzzer = Fuzzer(bundle, rng)
    context = zmq.Context()
    served: list = []
    stop = threading.Event()
    controller = threading.Thread(target=good_controller, args=(endpoint, bundle, stop, served), daemon=True)
    controller.start()

    session_sock = dealer(context, endpoint)  # has a session: replays, NaN and bad arrays reach the checks
    session_sock.send_multipart(wire.encode({"v": V, "type": "hello", "seq": 1, "bundle": bundle.name, "spec_hash": bundle.spec_hash}))
    assert wire.decode(session_sock.recv_multipart()).header["type"] == "welcome"
    anonymous = dealer(context, endpoint)  # never says hello: a well-formed step gets NO_SESSION
    over_cap = dealer(context, endpoint, rcvtimeo=300)

    rss = psutil.Process(proc.pid)
    rss_samples = []
    answered: dict[str, int] = {}
    sent = 0
    dropped_by_transport = 0
    try:
        while sent < TOTAL:
            batch = []
            for _ in range(WINDOW):
                kind = KINDS[int(rng.integers(len(KINDS)))]
                frames, codes = fuzzer.make(kind)
                session_sock.send_multipart(frames)
                batch.append((kind, codes, header_seq(frames[0]) if kind in ANSWERS_SEQ else None))
            sent += len(batch)
            anonymous.send_multipart(wire.encode(fuzzer.step_header(seq=sent), [OBS]))
            for kind, codes, re in batch:
                frames = session_sock.recv_multipart()
                if kind == "wrong_version":  # answered in the refused message's version: read it with plain msgpack
                    reply = wire.Message(msgpack.unpackb(frames[0]), ())
                    assert reply.header["v"] != V, reply.header
                else:
                    reply = wire.decode(frames)
                assert reply.header["type"] == "error", (kind, reply.header)
                assert reply.header["code"] in codes, (kind, reply.header)
                if re is not None:
                    assert reply.header.get("re") == re, (kind, reply.header)
                answered[kind] = answered.get(kind, 0) + 1
            no_session = wire.decode(anonymous.recv_multipart()).header
            assert (no_session["code"], no_session["re"]) == (ErrorCode.NO_SESSION, sent)
            if sent % 1000 == 0:
                rss_samples.append(rss.memory_info().rss)
            if sent % 2000 == 0:
                # A frame over the 1 MiB transport cap: libzmq drops that connection, nothing is answered.
                over_cap.send_multipart([b"\0" * (1024 * 1024 + 1)])
                with pytest.raises(zmq.Again):
                    over_cap.recv_multipart()
                dropped_by_transport += 1
        # The session socket is still served normally after all of it.
        session_sock.send_multipart(wire.encode(fuzzer.step_header(), [OBS]))
        final = wire.decode(session_sock.recv_multipart())
    finally:
        stop.set()
        controller.join(10)
        for sock in (session_sock, anonymous, over_cap):
            sock.close()
        context.term()

    assert proc.poll() is None, "server died"
    assert final.header["type"] == "action"
    np.testing.assert_array_equal(final.arrays[0], bundle.act(OBS))
    assert sum(answered.values()) == TOTAL and set(answered) == set(KINDS)
    assert dropped_by_transport == 5
    # Memory flat: once the allocator has seen every message size (first 4,000 messages), the server
    # grows by less than 1 MiB over the remaining 6,000.
    growth = rss_samples[-1] - rss_samples[3]
    assert growth < 1024 * 1024, [s // 1024 for s in rss_samples]
    # The good controller got the right action every time, and never waited a second for one.
    statuses = [status for _, status, _ in served]
    assert len(served) > 20 and statuses.count("ok") == len(served), {s: statuses.count(s) for s in set(statuses)}
    assert all(correct for _, _, correct in served)
    times = [t for t, _, _ in served]
    assert max(np.diff(times)) < 1.0
    # Bad messages are logged, rate-limited to about one line per error code per second.
    stop_process(proc)
    log_lines = [line for line in log_path.read_text().splitlines() if "rejected message" in line]
    assert 0 < len(log_lines) < 300
