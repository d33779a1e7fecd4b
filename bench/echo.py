"""The benches' latency floor: a bare pyzmq ROUTER that sends every message back as it came."""

from __future__ import annotations

import json
import sys

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
