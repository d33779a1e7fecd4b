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
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
