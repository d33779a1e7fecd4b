"""Addresses: which ZeroMQ endpoints the server accepts, and which hosts are this machine only.

The policy server refuses to listen beyond loopback without CURVE keys; the live viewer warns
before it does. Both ask `is_loopback_host` (controller side: stdlib only).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat

from bridge.errors import BridgeError


class EndpointError(BridgeError):
    """An endpoint that is not tcp://HOST:PORT, ipc://PATH or inproc://NAME, or an ipc path that cannot be bound."""


def check_endpoint(endpoint: str, flag: str, connect: bool = False) -> None:
    """Refuse a malformed endpoint, naming the flag it came from. A tcp port is 1-65535, or for a bind * or 0 (any):
    libzmq takes a port over 65535 modulo 2^16 and a connect to a malformed address retries it for ever."""
    scheme, sep, rest = endpoint.partition("://")
    host, colon, port = rest.rpartition(":")
    if sep and scheme in ("ipc", "inproc") and rest:
        return
    if sep and scheme == "tcp" and colon and host:
        if port.isdigit() and (1 if connect else 0) <= int(port) <= 65535 or port == "*" and not connect:
            return
    example = "tcp://127.0.0.1:5555" + ("" if connect else ", port * for any")
    raise EndpointError(f"{flag} {endpoint!r}: expected tcp://HOST:PORT with PORT 1-65535 (e.g. {example}), ipc://PATH "
                        "or inproc://NAME")


def telemetry_beside(bind: str) -> str:
    """The telemetry endpoint a server takes by default: next to its --bind, so two servers on one machine (each on its
    own port or ipc path) do not both claim one fixed telemetry port. On loopback whatever the bind's host, as before:
    a server opened to the network (--insecure) does not publish its telemetry there unasked."""
    scheme, _, rest = bind.partition("://")
    if scheme == "tcp":
        port = rest.rpartition(":")[2]
        return f"tcp://127.0.0.1:{int(port) + 1 if port.isdigit() and 0 < int(port) < 65535 else '*'}"
    return f"{bind}.telemetry" if scheme == "ipc" else f"{bind}-telemetry"


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets allowed): reachable from this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """ipc:// and inproc:// never leave the machine; tcp:// does unless its host is loopback."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    return is_loopback_host(endpoint.split("://", 1)[-1].rsplit(":", 1)[0])


def check_ipc_path_free(endpoint: str) -> None:
    """libzmq unlinks whatever lies at an ipc path before binding it: a live server's socket (both then report ready,
    and the first is cut off) or any file. Only a socket nobody listens on (a server's leftover) may go."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint.removeprefix("ipc://")
    if path.startswith("@") or not os.path.lexists(path):  # @: Linux's abstract namespace, no file
        return
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise EndpointError(f"cannot bind {endpoint}: {path} exists and is not a socket (binding would delete it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:  # ECONNREFUSED: no one listens; a stopped server's file
        return
    finally:
        probe.close()
    raise EndpointError(f"cannot bind {endpoint}: Address already in use, a process listens on it (is another server using it?)")
