"""The benches' latency floor: a bare pyzmq ROUTER that sends every message back as it came, and its client."""

from __future__ import annotations

import json
import sys
import time

import zmq


def echo_server() -> None:
    """Child mode: the bare ROUTER echo (prints its endpoint, serves until stdin closes)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind("tcp://127.0.0.1:*")
    print(json.dumps({"event": "ready", "endpoint": sock.getsockopt_string(zmq.LAST_ENDPOINT)}), flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    while True:
        events = dict(poller.poll())
        if sys.stdin.fileno() in events:
            break
        if sock in events:
            sock.send_multipart(sock.recv_multipart())
    sock.close(0)
    ctx.term()


class EchoClient:
    """A DEALER to the echo. Each request carries its number in the first 8 bytes of frame `tag_at`, and only
    the echo of that request ends its round trip: a reply that comes after its deadline stays queued, and a
    client that took the next message as its reply would from then on time only the pick-up of an echo that
    was already waiting (~30 us here instead of ~200 us), one request behind."""

    def __init__(self, endpoint: str, tag_at: int) -> None:
        self.ctx = zmq.Context()
        self.endpoint, self.tag_at = endpoint, tag_at
        self.sock = None
        self.seq = 0
        self.stale = 0  # echoes of earlier requests, read and dropped
        self.reconnect()

    def reconnect(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(self.endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)

    def round_trip(self, frames: list[bytes], deadline_s: float) -> int | None:
        """Send `frames` (frame tag_at's first 8 bytes replaced by the tag); ns until its echo, None past the deadline."""
        self.seq += 1
        tag, i = self.seq.to_bytes(8, "little"), self.tag_at
        frames = [*frames[:i], tag + frames[i][8:], *frames[i + 1:]]
        start = time.monotonic_ns()
        end = start + int(deadline_s * 1e9)
        self.sock.send_multipart(frames)
        while True:
            remaining_ns = end - time.monotonic_ns()
            if remaining_ns <= 0 or not self.poller.poll(-(-remaining_ns // 1_000_000)):
                return None
            if self.sock.recv_multipart()[i][:8] == tag:
                break
            self.stale += 1
        rtt = time.monotonic_ns() - start
        return rtt if rtt <= deadline_s * 1e9 else None

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
