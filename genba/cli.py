"""The one `genba` command: a thin layer that mounts each package's sub-commands.

Each package owns its verbs (scenarios/cli.py, sim/cli.py, ...); this module only wires them
together and turns expected errors into a one-line message and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from genba.errors import GenbaError

app = typer.Typer(
    name="genba",
    help="genba: simulate factory robot cells, train policies, export bundles, serve them to controllers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount() -> None:
    from genba.demo import register as register_demo
    from scenarios.cli import app as scenarios_app
    from sim.cli import register as register_sim

    register_demo(app)
    app.add_typer(scenarios_app, name="scenarios")
    register_sim(app)
    for module in ("policies.cli", "bridge.cli", "sim.viewer.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:  # a package not yet built must not break the others
            if exc.name and module.startswith(exc.name):
                continue
            raise
        mod.register(app)


_mount()


def main() -> None:
    try:
        app()
    except GenbaError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
