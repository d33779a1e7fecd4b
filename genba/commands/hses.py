"""`genba hses-sim`: a PyBullet cell answering Yaskawa's HSES protocol on UDP, as a controller would."""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import ExitStack

import typer

from genba.errors import AppError


def register(app: typer.Typer) -> None:
    app.command("hses-sim")(hses_sim)


def hses_sim(
    scenario: str = typer.Argument(..., help="cell to emulate (built-in name or YAML path)"),
    bind: str = typer.Option("127.0.0.1:10040", help="UDP HOST:PORT to answer on ([::1]:PORT for IPv6; port 0: any)"),
    robot: str = typer.Option("gp7", help="robot model; HSES is Yaskawa's, so gp7"),
    speed: float = typer.Option(1.0, help="1 = real time, 2 = twice as fast, 0 = as fast as possible while moving"),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="listen beyond loopback (anyone who reaches "
                                                                   "the port can move the simulated arm)"),
    seed: int = typer.Option(0, min=0, help="seed of the cell's reset (part arrivals)"),
    cell_bind: str = typer.Option("", help="also serve the cell PC's channel (sensing, episodes, faults) on this "
                                           "ZeroMQ endpoint, e.g. tcp://127.0.0.1:5590 (genba bridge run --cell)"),
    replace_moves: bool = typer.Option(False, "--replace-moves", help="a move while one runs replaces it "
                                                                      "(streaming; default: refused with 0x2010)"),
) -> None:
    """Emulate an HSES controller until SIGINT/SIGTERM; prints a JSON 'ready' line when listening."""
    from genba.hses import HsesEmulator  # lazy: PyBullet loads with the cell, not for --help
    from genba.hses.cell_channel import CellChannel  # lazy: with the emulator

    host, port = _parse_bind(bind)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with ExitStack() as stack:
        emulator = stack.enter_context(HsesEmulator(scenario, robot=robot, host=host, port=port, speed=speed,
                                                    allow_remote=allow_remote, seed=seed, replace_moves=replace_moves))
        channel = stack.enter_context(CellChannel(emulator, cell_bind, allow_remote)) if cell_bind else None
        _emit({"event": "ready", "host": emulator.address[0], "port": emulator.address[1], "scenario": scenario,
               "robot": robot, "speed": speed, "cell": channel.endpoint if channel else None})
        while not stop.wait(0.2):
            pass
    _emit({"event": "stopped", "stats": dict(emulator.stats)})  # after close: the thread has finished counting


def _parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise AppError(f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:10040 or [::1]:10040")
    return host.strip("[]"), int(port)


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()
