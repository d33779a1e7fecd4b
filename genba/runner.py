"""Run a typer app the genba way: expected errors as one red line and exit 1, never a traceback.

SIGTERM stops a command as Ctrl-C does: its `finally` blocks and context managers run, so the processes it
started are stopped and its files are finished (Python's default SIGTERM ends the process where it stands).
"""

from __future__ import annotations

import signal
import sys

import typer

from genba.errors import USER_ERRORS, Interrupted


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _from_interrupt(exc: BaseException) -> bool:
    """typer turns KeyboardInterrupt into a silent exit 130: the SystemExit's chain still holds it."""
    seen = exc
    for _ in range(4):
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
    return False


def run_app(app: typer.Typer, prog_name: str | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(prog_name=prog_name)
    except SystemExit as exc:
        if exc.code == 130 and _from_interrupt(exc):
            typer.secho("interrupted", err=True)
        raise
    except Interrupted as exc:
        typer.secho(f"interrupted: {exc}", err=True)
        sys.exit(130)
    except USER_ERRORS as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave (a socket, a device): keep the traceback
            raise
        # A path that cannot be made or written (an --out under a file, a full disk, no permission): the path and why.
        paths = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        typer.secho(f"error: {paths}: {exc.strerror or exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
