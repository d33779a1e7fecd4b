"""Run a typer app the genba way: expected errors as one red line and exit 1, never a traceback."""

from __future__ import annotations

import sys

import typer

from genba.errors import GenbaError


def run_app(app: typer.Typer, prog_name: str | None = None) -> None:
    try:
        app(prog_name=prog_name)
    except GenbaError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


def standalone(register) -> None:
    """`python -m PACKAGE.cli`: one package's verbs alone, without the rest of the `genba` command."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
    register(app)
    run_app(app)
