"""Chunks over the real bridge: `genba bridge serve` (a real process, real sockets on loopback) serving a
chunked gantry bundle to a single-action controller and to a chunk-asking one; bad chunk requests get
MALFORMED and the server keeps serving."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from bridge import protocol as wire
from bridge.client import BridgeClient, ClientConfig
from bridge.protocol import ErrorCode
from genba.gantry_bundle import export_gantry_chunk_bundle
from genba.server_process import ServerProcess
from policies.bundle import load_bundle

OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.25], dtype=np.float32)


@pytest.fixture(scope="module")
def chunk_bundle(tmp_path_factory):
    return load_bundle(export_gantry_chunk_bundle(tmp_path_factory.mktemp("chunk") / "gantry-chunk", chunk=4))


@pytest.fixture(scope="module")
def server(chunk_bundle, bundle_dir):
    with ServerProcess([chunk_bundle.path, bundle_dir], "--telemetry", "off", "--device", "cpu") as process:
        yield process


def client_for(server, bundle) -> BridgeClient:
    client = BridgeClient(ClientConfig(server.endpoint, bundle.name, bundle.spec_hash))
    client.connect(10.0)
    return client


def test_a_single_action_controller_gets_the_chunks_first_action(server, chunk_bundle):
    with client_for(server, chunk_bundle) as client:
        assert client.welcome.chunk == 4
        result = client.step(OBS, 2.0)
    assert result.status == "ok" and result.action.shape == (3,)
    assert result.action.tobytes() == chunk_bundle.act_chunk(OBS)[0].tobytes()


def test_a_chunk_request_gets_the_chunk_with_its_start_and_period(server, chunk_bundle):
    expected = chunk_bundle.act_chunk(OBS)
    assert expected.shape == (4, 3) and not np.array_equal(expected[0], expected[1])
    with client_for(server, chunk_bundle) as client:
        taken = time.monotonic_ns() - 3_000_000  # observed 3 ms before sending
        client.send_chunk_request(OBS, taken, 2.0, 10)
        (reply,) = client.poll_chunks(2.0)
        client.send_chunk_request(OBS, taken + 1, 2.0, 2)  # at most 2 rows wanted
        (short,) = client.poll_chunks(2.0)
    assert reply.actions.tobytes() == expected.tobytes()
    assert reply.start_ns == taken and reply.period_ns == 50_000_000
    assert reply.obs_age_us >= 3_000  # the server saw it was at least 3 ms old when sent
    assert short.actions.tobytes() == expected[:2].tobytes()


def test_a_single_action_bundle_answers_a_chunk_request_with_a_chunk_of_one(server, bundle):
    with client_for(server, bundle) as client:
        assert client.welcome.chunk == 1
        client.send_chunk_request(OBS, time.monotonic_ns(), 2.0, 10)
        (reply,) = client.poll_chunks(2.0)
    assert reply.actions.shape == (1, 3) and reply.actions[0].tobytes() == bundle.act(OBS).tobytes()


@pytest.mark.parametrize("fields, fragment", [
    ({"chunk": 0}, "chunk must be at least 1"),
    ({"chunk": True}, "'chunk' must be int"),
    ({"chunk": 4, "obs_t_ns": 2_000_000_000}, "obs_t_ns 2000000000 is after the step's t_ns"),
    ({"chunk": 4, "obs_t_ns": -1}, "'obs_t_ns' must be an unsigned 64-bit integer"),
])
def test_bad_chunk_requests_are_malformed_and_the_server_keeps_serving(server, chunk_bundle, fields, fragment):
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 5000
    try:
        sock.connect(server.endpoint)
        sock.send_multipart(wire.encode(wire.make_header(wire.MsgType.HELLO, 1, spec_hash=chunk_bundle.spec_hash,
                                                         bundle=chunk_bundle.name)))
        assert wire.decode(sock.recv_multipart()).header["type"] == "welcome"
        header = {"v": 2, "type": "step", "seq": 2, "t_ns": 1_000_000_000, "deadline_us": 1_000_000, **fields}
        sock.send_multipart(wire.encode(header, [OBS]))
        error = wire.decode(sock.recv_multipart()).header
        assert error["type"] == "error" and error["code"] == ErrorCode.MALFORMED and error["re"] == 2
        assert fragment in error["text"]
        sock.send_multipart(wire.encode({**header, "seq": 3, "chunk": 4, "obs_t_ns": 999_000_000}, [OBS]))
        reply = wire.decode(sock.recv_multipart())
        assert reply.header["type"] == "action" and reply.arrays[0].shape == (4, 3)
        assert reply.header["chunk_start_ns"] == 999_000_000 and reply.header["obs_age_us"] >= 1000.0
    finally:
        sock.close()
        context.term()
