"""Run a typer app the genba way: expected errors as one red line and exit 1, never a traceback."""

from __future__ import annotations

import sys

import typer

from genba.errors import USER_ERRORS


def run_app(app: typer.Typer, prog_name: str | None = None) -> None:
    try:
        app(prog_name=prog_name)
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
