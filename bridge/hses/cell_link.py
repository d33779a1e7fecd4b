"""The controller side's link to the cell PC (`genba hses-sim --cell-bind`): msgpack over a ZeroMQ REQ socket.

The cell PC knows what HSES does not carry: the cell's description, the parts it sees, the gripper's
opening and each episode's outcome (genba.hses.cell_channel serves them). A request unanswered within
the timeout raises CellLinkError and the socket is rebuilt (a REQ socket cannot send twice in a row).
Standard library, pyzmq and msgpack only.
"""

from __future__ import annotations

from typing import Any

import msgpack
import zmq

from bridge.endpoints import check_endpoint
from bridge.errors import BridgeError


class CellLinkError(BridgeError):
    """The cell PC did not answer in time, or answered with an error."""


class CellLink:
    def __init__(self, endpoint: str, timeout_s: float = 2.0) -> None:
        check_endpoint(endpoint, "--cell", connect=True)
        self.endpoint, self.timeout_ms = endpoint, max(1, int(timeout_s * 1000))
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None

    def _open(self) -> zmq.Socket:
        if self._socket is None:
            self._socket = self._context.socket(zmq.REQ)
            self._socket.linger = 0
            self._socket.connect(self.endpoint)
        return self._socket

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        sock = self._open()
        sock.send(msgpack.packb({"op": op, **fields}, use_bin_type=True))
        if not sock.poll(self.timeout_ms):
            sock.close(linger=0)
            self._socket = None
            raise CellLinkError(f"the cell PC at {self.endpoint} did not answer {op!r} within {self.timeout_ms} ms")
        reply = msgpack.unpackb(sock.recv(), raw=False)
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise CellLinkError(f"the cell PC refused {op!r}: {error}")
        return reply

    def describe(self) -> dict[str, Any]:
        return self.call("describe")["spec"]

    def reset(self, seed: int) -> None:
        self.call("reset", seed=seed)

    def sense(self) -> dict[str, Any]:
        return self.call("sense")

    def fault(self, kind: str, **fields: Any) -> None:
        self.call("fault", kind=kind, **fields)

    def close(self) -> None:
        self._context.destroy(linger=0)

    def __enter__(self) -> CellLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
