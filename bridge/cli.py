"""`genba bridge ...`: serve bundles to robot controllers, make CURVE keys, run the digital twin."""

from __future__ import annotations

import json
import logging
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from bridge.bundles import limit_threads


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Backend(str, Enum):
    auto = "auto"
    onnx = "onnx"
    torchscript = "torchscript"


def _emit(event: dict) -> None:
    """One JSON line on stdout (the ready/stopped lines scripts and tests wait for)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def serve(
    bundles: List[Path] = typer.Argument(..., help="Bundle directories to serve; controllers pick one by name at hello."),
    bind: str = typer.Option("tcp://127.0.0.1:5555", help="ROUTER endpoint; loopback unless told otherwise."),
    telemetry: str = typer.Option("tcp://127.0.0.1:5556", help="PUB endpoint for telemetry; 'off' to disable."),
    device: Device = typer.Option(Device.auto, help="Where inference runs: auto picks cuda when torch sees one."),
    backend: Backend = typer.Option(Backend.auto, help="auto: onnx on cpu, torchscript on cuda."),
    curve_secret: Optional[Path] = typer.Option(None, help="Server secret key file (.key_secret) from `genba bridge keygen`."),
    allow: Optional[Path] = typer.Option(None, help="Directory of allowed controller public keys (*.key)."),
    insecure: bool = typer.Option(False, help="Allow a non-loopback bind without CURVE (trusted networks only)."),
    max_message_bytes: int = typer.Option(65536, help="Larger messages get a TOO_LARGE error."),
    max_sessions: int = typer.Option(64, help="Controllers served at once."),
    session_timeout: float = typer.Option(10.0, help="Seconds of silence before a controller's session is dropped."),
    log_level: str = typer.Option("INFO", help="Python logging level for the server log on stderr."),
) -> None:
    """Serve policy bundles over ZeroMQ until SIGINT/SIGTERM; prints a JSON 'ready' line when listening."""
    limit_threads()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from bridge.bundles import load_served_bundles
    from bridge.keys import ServerKeys
    from bridge.server import BridgeServer, ServerConfig, ServerConfigError

    if (curve_secret is None) != (allow is None):
        raise ServerConfigError("CURVE needs both --curve-secret (server key) and --allow (controller keys directory)")
    keys = ServerKeys(curve_secret, allow) if curve_secret is not None and allow is not None else None
    loaded, used_device, used_backend = load_served_bundles(bundles, device.value, backend.value)
    config = ServerConfig(
        bind=bind,
        telemetry=None if telemetry == "off" else telemetry,
        max_message_bytes=max_message_bytes,
        max_sessions=max_sessions,
        session_timeout_s=session_timeout,
        keys=keys,
        allow_insecure_remote=insecure,
    )
    server = BridgeServer(loaded, config)
    server.start()

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("bridge.server").info("signal %d: shutting down", signum)
        server.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _emit({
        "event": "ready", "endpoint": server.endpoint, "telemetry": server.telemetry_endpoint,
        "bundles": [e.name for e in server.entries], "device": used_device, "backend": used_backend,
        "curve": keys is not None,
    })
    server.serve_forever()
    _emit({"event": "stopped", "totals": dict(server.stats.totals)})


def keygen(
    directory: Path = typer.Argument(..., help="Where to write NAME.key (public) and NAME.key_secret."),
    name: str = typer.Option("server", help="Key name: 'server' for the server, one name per controller."),
    force: bool = typer.Option(False, help="Replace existing key files of that name."),
) -> None:
    """Create a CURVE key pair (NAME.key public, NAME.key_secret private).

    The server gets its .key_secret (--curve-secret) and a directory with each allowed
    controller's .key (--allow); each controller gets its own .key_secret and the server's .key.
    """
    from bridge.keys import generate_keypair

    public, secret = generate_keypair(directory, name, overwrite=force)
    typer.echo(f"public key: {public}\nsecret key: {secret} (keep private)")


def make_app() -> typer.Typer:
    bridge_app = typer.Typer(help="Serve policy bundles to robot controllers over ZeroMQ.", no_args_is_help=True)
    bridge_app.command("serve")(serve)
    bridge_app.command("keygen")(keygen)
    return bridge_app


def register(app: typer.Typer) -> None:
    app.add_typer(make_app(), name="bridge")
