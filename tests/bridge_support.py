"""Shared by the bridge tests: a BridgeServer on its own thread, on free loopback ports."""

from __future__ import annotations

import contextlib
import threading

from bridge.server import BridgeServer, ServerConfig


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
