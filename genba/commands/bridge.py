"""`genba bridge ...`: serve bundles to robot controllers, make CURVE keys, run the digital twin."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from bridge.controller import SERVO_HZ_RANGE
from bridge.endpoints import telemetry_beside
from bridge.images import ENCODINGS
from bridge.keys import ClientKeys, ServerKeys, generate_keypair
from bridge.realtime import freeze_heap
from bridge.server import BridgeServer, ServerConfig, ServerConfigError
from genba.commands.options import Observe, obs_option, play_option, randomization_option
from genba.errors import Interrupted
from genba.jsonfile import json_option, write_json
from policies.bundle_format import is_bundle, read_manifest


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Executor(str, Enum):
    onnxruntime = "onnxruntime"
    kernel = "kernel"


class Inference(str, Enum):
    auto = "auto"
    inline = "inline"
    thread = "thread"


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
    telemetry: Optional[str] = typer.Option(None, help="PUB endpoint for telemetry; 'off' to disable (default: loopback beside "
                                            "--bind: its port + 1, any port for *, PATH.telemetry for ipc://PATH)."),
    device: Device = typer.Option(Device.auto, help="Where inference runs: auto picks cuda when torch sees one."),
    backend: Backend = typer.Option(Backend.auto, help="auto: onnx on cpu, torchscript on cuda."),
    inference: Inference = typer.Option(
        Inference.auto, help="Where forward passes run: inline on the I/O loop (fast CPU models), thread (slow or GPU "
        "models never block the sockets), auto: inline for a CPU bundle timed under --inline-budget-us."),
    inline_budget_us: float = typer.Option(200.0, help="auto: a forward pass slower than this runs on the thread."),
    executor: Executor = typer.Option(
        Executor.onnxruntime, help="ONNX on the CPU: onnxruntime, or kernel (opt-in hand-written fast path for plain-MLP "
        "graphs, checked against onnxruntime at load; see docs/benchmarks.md)."),
    curve_secret: Optional[Path] = typer.Option(None, help="Server secret key file (.key_secret) from `genba bridge keygen`."),
    allow: Optional[Path] = typer.Option(None, help="Directory of allowed controller public keys (*.key)."),
    insecure: bool = typer.Option(False, help="Allow a non-loopback bind without CURVE (trusted networks only)."),
    max_message_bytes: int = typer.Option(
        65536, help="Larger messages get a TOO_LARGE error; a pixel bundle's cap grows to what its camera frames need, sent raw."),
    max_sessions: int = typer.Option(64, help="Controllers served at once."),
    session_timeout: float = typer.Option(10.0, help="Seconds of silence before a controller's session is dropped."),
    log_level: str = typer.Option("INFO", help="Python logging level for the server log on stderr."),
) -> None:
    """Serve policy bundles over ZeroMQ until SIGINT/SIGTERM; prints a JSON 'ready' line when listening."""
    if log_level.upper() not in logging.getLevelNamesMapping():
        raise ServerConfigError(f"--log-level {log_level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if (curve_secret is None) != (allow is None):
        raise ServerConfigError("CURVE needs both --curve-secret (server key) and --allow (controller keys directory)")
    keys = ServerKeys(curve_secret, allow) if curve_secret is not None and allow is not None else None
    loaded, used_device, used_backend = _load_bundles(bundles, device.value, backend.value, executor.value)
    config = ServerConfig(
        bind=bind,
        telemetry=None if telemetry == "off" else telemetry or telemetry_beside(bind),
        max_message_bytes=max_message_bytes,
        max_sessions=max_sessions,
        session_timeout_s=session_timeout,
        inference=inference.value,
        inline_budget_us=inline_budget_us,
        keys=keys,
        allow_insecure_remote=insecure,
    )
    server = BridgeServer(loaded, config)
    server.start()
    freeze_heap()

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("bridge.server").info("signal %d: shutting down", signum)
        server.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    _emit({
        "event": "ready", "endpoint": server.endpoint, "telemetry": server.telemetry_endpoint,
        "bundles": [e.name for e in server.entries], "device": used_device, "backend": used_backend,
        "inference": server.inference_mode,
        "executors": {bundle.name: bundle.executor for bundle in loaded}, "curve": keys is not None,
    })
    server.serve_forever()
    _emit({"event": "stopped", "totals": dict(server.stats.totals)})


def _load_bundles(paths: List[Path], device: str, backend: str, executor: str):
    """The bundles to serve, verified and loaded on one device with one compute thread each."""
    import torch  # the device check needs it; a served TorchScript bundle too

    from policies.bundle import default_backend, load_bundle
    from policies.device import resolve_device

    device = resolve_device(device)
    backend = default_backend(device) if backend == "auto" else backend
    torch.set_num_threads(1)
    return [load_bundle(path, backend=backend, device=device, threads=1, executor=executor) for path in paths], device, backend


def keygen(
    directory: Path = typer.Argument(..., help="Where to write NAME.key (public) and NAME.key_secret."),
    name: str = typer.Option("server", help="Key name: 'server' for the server, one name per controller."),
    force: bool = typer.Option(False, help="Replace existing key files of that name."),
) -> None:
    """Create a CURVE key pair (NAME.key public, NAME.key_secret private).

    The server gets its .key_secret (--curve-secret) and a directory with each allowed
    controller's .key (--allow); each controller gets its own .key_secret and the server's .key.
    """
    public, secret = generate_keypair(directory, name, overwrite=force)
    typer.echo(f"public key: {public}\nsecret key: {secret} (keep private)")


def twin(
    scenario: str = typer.Argument(..., help="Cell to run as the controller (built-in name or YAML path)."),
    connect: str = typer.Option(..., help="Endpoint of `genba bridge serve`, e.g. tcp://127.0.0.1:5555."),
    bundle: Optional[str] = typer.Option(
        None, help="Name of the served bundle to use (a bundle directory works too: its manifest name is read). "
        "Default: the server picks the one trained for this cell (same observation/action spec hash)."),
    episodes: int = typer.Option(20, help="Episodes, seeded like `genba eval`."),
    seed: int = typer.Option(0, min=0, help="Evaluation seed (episode i uses the same seed as in `genba eval --seed`)."),
    servo_hz: float = typer.Option(250.0, help="Servo rate of the setpoint stream (125-1000 Hz)."),
    speed: float = typer.Option(1.0, help="1 = real time, 2 = twice as fast, 0 = as fast as possible."),
    latency_budget: float = typer.Option(0.5, help="Fraction of the control period a reply may take (above 1 with --speed 0: a slow host)."),
    latency_ms: float = typer.Option(0.0, help="Fault: added latency before each request (ms)."),
    jitter_ms: float = typer.Option(0.0, help="Fault: plus uniform random latency up to this (ms)."),
    drop_rate: float = typer.Option(0.0, help="Fault: fraction of replies lost."),
    random_delay_ms: float = typer.Option(0.0, help="Fault: plus exponential random latency with this mean (ms)."),
    loss_burst: float = typer.Option(1.0, help="Fault: mean length of a run of lost replies (1: independent)."),
    chunks: bool | None = typer.Option(None, "--chunks/--no-chunks", help="Execute action chunks from a queue "
                                       "(default: when the served bundle gives chunks)."),
    replan_after: int | None = typer.Option(None, help="Chunks: re-observe after this many actions (default: half the chunk)."),
    blend: int = typer.Option(0, help="Chunks: control periods crossfaded at a chunk boundary."),
    max_age_ms: float | None = typer.Option(None, help="Chunks: never execute an action from an observation older "
                                            "than this (default: the chunk's horizon)."),
    fault_seed: int = typer.Option(0, min=0, help="Seed of the fault generator."),
    reduced_speed: bool = typer.Option(False, help="Cap the tool at 250 mm/s (reduced-speed mode)."),
    max_tool_accel: Optional[float] = typer.Option(None, help="Tool-target acceleration limit (m/s^2)."),
    robot: Optional[str] = typer.Option(None, help="Robot model override (as for `genba eval --robot`)."),
    obs: Observe = obs_option(),
    observe_command: bool = typer.Option(False, "--observe-command", help="Send the commanded tool target minus the tool "
                                         "after the cell's features (for a bundle trained with observe_command)."),
    randomization: Optional[str] = randomization_option(),
    play: bool = play_option(),
    image_encodings: str = typer.Option(
        "raw", help="--obs pixels: camera frame encodings to offer, preferred first, comma-separated: raw, png (lossless), "
        "jpeg (lossy: colour cameras only, depth goes png or raw)."),
    curve_secret: Optional[Path] = typer.Option(None, help="This controller's .key_secret (CURVE)."),
    server_key: Optional[Path] = typer.Option(None, help="The server's public .key (CURVE)."),
    json_path: Optional[Path] = json_option("Write the report as JSON."),
    web: bool = typer.Option(False, "--web", help="Serve the live page of `genba view --web`, with latency and safety counters."),
    host: str = typer.Option("127.0.0.1", help="--web: address to listen on."),
    port: int = typer.Option(8000, help="--web: port (0 = any free port)."),
    fps: float = typer.Option(10.0, help="--web: frame rate cap of the page."),
) -> None:
    """Run a PyBullet cell as the robot controller through the bridge client and safety layer.

    With --web: pause freezes the cell (heartbeats keep the session), step runs one period, reset ends the episode."""
    from genba.twin import Faults, TwinConfig, TwinError, WebOptions, run_twin  # lazy: PyBullet, OpenCV

    low, high = SERVO_HZ_RANGE
    if not low <= servo_hz <= high:
        raise TwinError(f"--servo-hz {servo_hz:g}: use {low:g}-{high:g} Hz")
    _check_ranges(TwinError, ("--episodes", episodes, ">= 1"), ("--speed", speed, ">= 0"), ("--latency-budget", latency_budget, "> 0"))
    if (curve_secret is None) != (server_key is None):
        raise TwinError("CURVE needs both --curve-secret (this controller's key) and --server-key")
    keys = ClientKeys(curve_secret, server_key) if curve_secret is not None and server_key is not None else None
    offered = tuple(e.strip() for e in image_encodings.split(",") if e.strip())
    if not offered or any(e not in ENCODINGS for e in offered):
        raise TwinError(f"--image-encodings {image_encodings!r}: name one or more of {', '.join(ENCODINGS)}")
    config = TwinConfig(
        scenario=scenario, endpoint=connect, bundle=_bundle_name(bundle), episodes=episodes, seed=seed, servo_hz=servo_hz,
        speed=speed, latency_budget=latency_budget, reduced_speed=reduced_speed, max_tool_accel=max_tool_accel, robot=robot,
        obs_mode=obs.value, observe_command=observe_command, image_encodings=offered, randomization=randomization, play=play,
        faults=Faults(latency_ms, jitter_ms, drop_rate, fault_seed, random_delay_ms, loss_burst), keys=keys,
        chunks=chunks, replan_after=replan_after, blend=blend, max_age_ms=max_age_ms,
        web=WebOptions(host, port, fps) if web else None,
    )
    freeze_heap()
    report = run_twin(config, log=lambda line: typer.echo(line, err=True))
    for line in report.lines():
        typer.echo(line)
    write_json(json_path, report.to_dict())
    if report.interrupted:
        raise Interrupted(f"the figures above are the {report.episodes} finished episodes" + (f" ({json_path})" if json_path else ""))


def run(
    controller: str = typer.Option(..., help="The robot controller: hses://HOST[:PORT] (Yaskawa HSES, port 10040 by default)."),
    cell: str = typer.Option(..., help="The cell PC's endpoint (`genba hses-sim --cell-bind`), e.g. tcp://127.0.0.1:5590."),
    connect: str = typer.Option(..., help="Endpoint of `genba bridge serve`, e.g. tcp://127.0.0.1:5555."),
    bundle: Optional[str] = typer.Option(None, help="Served bundle name; default: the one trained for the cell."),
    episodes: int = typer.Option(20, help="Episodes, seeded like `genba eval`."),
    seed: int = typer.Option(0, min=0, help="Evaluation seed (episode i uses the same seed as in `genba eval --seed`)."),
    latency_budget: float = typer.Option(0.5, help="Fraction of the control period the policy server may take."),
    outage_limit: float = typer.Option(1.0, help="Seconds without a complete HSES exchange before an episode stops."),
    hses_timeout: float = typer.Option(0.02, help="Seconds an HSES reply may take; a lost read holds the period, a lost move is sent once more."),
    speed: float = typer.Option(1.0, help="1 = real time; must match the emulator's --speed."),
    json_path: Optional[Path] = json_option("Write the report as JSON."),
) -> None:
    """Drive a robot controller with the policy server: each period read it, ask the policy, check safety, move."""
    from bridge.hses.adapter import AdapterConfig  # lazy: the HSES stack only for this verb
    from genba.hses.run import HsesRunError, run_hses  # lazy: the twin's limits, policies' evaluation helpers

    _check_ranges(HsesRunError, ("--episodes", episodes, ">= 1"), ("--speed", speed, "> 0"), ("--latency-budget", latency_budget, "(0, 1]"),
                  ("--outage-limit", outage_limit, "> 0"), ("--hses-timeout", hses_timeout, "> 0"))
    config = AdapterConfig(latency_budget=latency_budget, outage_limit_s=outage_limit, hses_timeout_s=hses_timeout,
                           speed=speed)
    freeze_heap()
    report = run_hses(controller, cell, connect, episodes, seed, _bundle_name(bundle), config,
                      log=lambda line: typer.echo(line, err=True))
    for line in report.lines():
        typer.echo(line)
    write_json(json_path, report.to_dict())
    if report.stop is not None:
        raise typer.Exit(2)  # the run was stopped: scripts must see it


def _check_ranges(error: type[Exception], *checks: tuple[str, float, str]) -> None:
    """Each (flag, value, rule) with rule '>= 1', '>= 0', '> 0' or '(0, 1]': the value finite and within it, else an error
    naming the flag (one message for all of them named none, and NaN passed or failed deep inside)."""
    rules = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0, "(0, 1]": lambda v: 0 < v <= 1}
    for flag, value, rule in checks:
        if not (math.isfinite(value) and rules[rule](value)):
            raise error(f"{flag} must be {'in ' if rule.startswith('(') else ''}{rule}, got {value}")


def _bundle_name(bundle: Optional[str]) -> Optional[str]:
    """--bundle as the name the server knows: a bundle directory gives its (verified) manifest name."""
    if bundle is not None and is_bundle(bundle):
        return str(read_manifest(bundle)["name"])
    return bundle


app = typer.Typer(help="Serve policy bundles to robot controllers over ZeroMQ.", no_args_is_help=True)
app.command("serve")(serve)
app.command("keygen")(keygen)
app.command("twin")(twin)
app.command("run")(run)
