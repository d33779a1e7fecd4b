"""`python -m bridge ...`: the bridge commands alone (what `genba bridge ...` runs), for controllers
and test harnesses that should not depend on the other packages' commands importing cleanly."""

from __future__ import annotations

import sys

import typer

from bridge.cli import make_app
from genba.errors import GenbaError

app = make_app()
app.pretty_exceptions_enable = False


def main() -> None:
    try:
        app(prog_name="python -m bridge")
    except GenbaError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
