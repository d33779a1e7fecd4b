"""Addresses: which ZeroMQ endpoints the server accepts, and which hosts are this machine only.

The policy server refuses to listen beyond loopback without CURVE keys; the live viewer warns
before it does. Both ask `is_loopback_host` (controller side: stdlib only).
"""

from __future__ import annotations

import ipaddress

from bridge.errors import BridgeError


class EndpointError(BridgeError):
    """An endpoint that is not tcp://HOST:PORT, ipc://PATH or inproc://NAME."""


def check_endpoint(endpoint: str, flag: str) -> None:
    """Refuse a malformed endpoint, naming the flag it came from."""
    scheme, sep, rest = endpoint.partition("://")
    ok = sep and (scheme in ("ipc", "inproc") and rest or scheme == "tcp" and ":" in rest and rest.rsplit(":", 1)[1])
    if not ok:
        raise EndpointError(
            f"{flag} {endpoint!r}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555, port * for any), ipc://PATH or inproc://NAME"
        )


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
