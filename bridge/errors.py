"""The bridge's user-facing errors (controller side too: imports nothing)."""


class BridgeError(Exception):
    """Base of every bridge error the app reports as one line: bad limits, keys, server settings, handshakes."""
