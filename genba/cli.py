"""The one `genba` command: a thin layer that mounts each package's sub-commands.

Each package owns its verbs (scenarios/cli.py, sim/cli.py, ...); this module only wires them
together and turns expected errors into a one-line message and exit code 1, never a traceback.
"""

from __future__ import annotations

import typer

from genba.runner import run_app

app = typer.Typer(
    name="genba",
    help="genba: simulate factory robot cells, train policies, export bundles, serve them to controllers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount() -> None:
    from bridge.cli import register as register_bridge
    from genba.demo import register as register_demo
    from policies.cli import register as register_policies
    from scenarios.cli import app as scenarios_app
    from sim.cli import register as register_sim
    from sim.viewer.cli import register as register_viewer

    register_demo(app)
    register_sim(app)
    register_policies(app)
    register_viewer(app)
    app.add_typer(scenarios_app, name="scenarios")
    register_bridge(app)


_mount()


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
