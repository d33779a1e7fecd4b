"""Shared by the bridge tests: a BridgeServer on its own thread, on free loopback ports."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import zmq

from bridge.server import BridgeServer, ServerConfig

TIMEOUT_MS = 3000


def wait_for(predicate, timeout_s: float) -> bool:
    """Poll `predicate` every 10 ms until it holds (True) or `timeout_s` passes (False)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@contextlib.contextmanager
def serving(*policies, **config):
    """Serve `policies` until the block ends; a crash of the serve loop fails the test."""
    config.setdefault("bind", "tcp://127.0.0.1:*")
    config.setdefault("telemetry", "tcp://127.0.0.1:*")
    server = BridgeServer(list(policies), ServerConfig(**config))
    failure = []

    def run():
        try:
            server.serve_forever()
        except BaseException as exc:  # surfaced when the block ends
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert server.wait_ready(10)
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "server did not stop"
        assert not failure, failure


class GatedPolicy:
    """A real bundle behind a gate: inference waits until the test opens it; records batch sizes.

    ``delay_s`` makes every forward pass that slow; ``device="cpu"`` lets the server's auto mode
    consider running it inline (without a device, it always gets the inference thread).
    """

    def __init__(self, bundle, delay_s: float = 0.0, device: str | None = None):
        self.bundle = bundle
        self.name, self.spec_hash, self.manifest = bundle.name, bundle.spec_hash, bundle.manifest
        self.obs_dim, self.act_dim, self.control_hz = bundle.obs_dim, bundle.act_dim, bundle.control_hz
        self.delay_s = delay_s
        self.device = device
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def reset(self) -> None:
        self.bundle.reset()

    def act(self, obs):
        self.batches.append(len(obs))
        self.entered.set()
        assert self.gate.wait(10), "test never opened the gate"
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.bundle.act(obs)


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    # destroy, not term: a test that fails before closing its sockets must fail, not hang in term().
    ctx.destroy(linger=0)


def dealer(context, endpoint):
    """A raw controller socket (send anything at all) with send/receive timeouts."""
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = TIMEOUT_MS
    sock.sndtimeo = TIMEOUT_MS
    sock.connect(endpoint)
    return sock
