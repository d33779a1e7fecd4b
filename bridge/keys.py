"""CURVE key files for the bridge: generation and loading (ZeroMQ certificate format).

``genba bridge keygen DIR --name NAME`` writes NAME.key (public, safe to share) and
NAME.key_secret (keep private). The server loads its secret file and a directory of controller
public keys (the allow-list); each controller loads its secret file and the server's public file.
The files are ZeroMQ's (czmq/pyzmq) certificate text: ``public-key = "..."`` and, in the secret
file, ``secret-key = "..."`` lines holding 40-character Z85 keys (docs/bridge-protocol.md, Keys).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.certs import create_certificates, load_certificate
from zmq.utils import z85

from bridge.errors import BridgeError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class KeyFileError(BridgeError):
    """A key file that is missing, unreadable or of the wrong kind."""


def require_curve() -> None:
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq was built without CURVE support; install pyzmq wheels from PyPI")


def generate_keypair(directory: str | os.PathLike, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Write DIR/NAME.key and DIR/NAME.key_secret (secret file readable by the owner only)."""
    require_curve()
    if not _NAME.match(name):
        raise KeyFileError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists() and not overwrite:
            raise KeyFileError(f"{path} already exists; pick another --name or pass --force to replace it")
    public_file, secret_file = create_certificates(directory, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def _load(path: str | os.PathLike, want_secret: bool) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file {path} not found (create one with `genba bridge keygen`)")
    try:
        public, secret = load_certificate(path)
    except (ValueError, OSError) as exc:
        raise KeyFileError(f"{path}: not a ZeroMQ certificate ({exc})") from None
    if want_secret and not secret:
        raise KeyFileError(f"{path} holds only a public key; pass the matching .key_secret file")
    _check_z85(path, "public-key", public)
    if secret:
        _check_z85(path, "secret-key", secret)
        # A public line pasted from another pair: the peer would be told one key and the handshake signed with another,
        # and every CURVE handshake would fail with no word on either side.
        if zmq.curve_public(secret) != public:
            raise KeyFileError(f"{path}: its public-key line is not the public half of its secret key (was it copied from "
                               "another pair?); make a new pair with `genba bridge keygen`")
    return public, secret


def _check_z85(path: Path, what: str, key: bytes) -> None:
    """A CURVE key in a certificate is 40 Z85 characters (32 bytes); libzmq would refuse anything else."""
    try:
        ok = len(key) == 40 and len(z85.decode(key)) == 32
    except Exception:  # pyzmq's decoder raises KeyError, ValueError or struct.error for non-Z85 text
        ok = False
    if not ok:
        # The length only: never echo key material (it may be a secret key) into logs.
        raise KeyFileError(f"{path}: {what} is not a CURVE key ({len(key)} characters; expected 40 Z85 characters "
                           "encoding 32 bytes)")


def load_public_key(path: str | os.PathLike) -> bytes:
    return _load(path, want_secret=False)[0]


def load_secret_keypair(path: str | os.PathLike) -> tuple[bytes, bytes]:
    public, secret = _load(path, want_secret=True)
    assert secret is not None
    return public, secret


@dataclass(frozen=True)
class ServerKeys:
    """The server's secret certificate plus the directory of allowed controller public keys."""

    secret_file: Path
    allow_dir: Path

    def __post_init__(self) -> None:
        require_curve()
        load_secret_keypair(self.secret_file)
        if not Path(self.allow_dir).is_dir():
            raise KeyFileError(f"allow-list directory {self.allow_dir} not found (put controller .key files there)")
        allowed = sorted(Path(self.allow_dir).glob("*.key"))  # what the ZAP handler reads, once, when the server starts
        if not allowed:  # CURVE on with nobody allowed: the server ran 'ready' and refused every controller
            raise KeyFileError(f"allow-list directory {self.allow_dir} holds no controller .key files, so no controller could "
                               "connect; copy their public keys there (`genba bridge keygen` writes NAME.key)")
        for public_file in allowed:
            load_public_key(public_file)


@dataclass(frozen=True)
class ClientKeys:
    """The controller's secret certificate plus the server's public certificate."""

    secret_file: Path
    server_public_file: Path

    def apply(self, socket: zmq.Socket) -> None:
        public, secret = load_secret_keypair(self.secret_file)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_serverkey = load_public_key(self.server_public_file)
