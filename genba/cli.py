"""The one `genba` command: mounts every verb of genba/commands/ on one typer app.

Each command module parses its flags and calls the libraries; this module only wires them together,
and genba.runner turns every library's expected errors into one line and exit code 1.
"""

from __future__ import annotations

from bridge.realtime import limit_threads

limit_threads()  # before numpy loads with the commands below: its BLAS reads the thread settings then

import typer  # noqa: E402

from genba.commands import bridge, calibrate, demo, expert, hses, policies, robustness, scenarios, sweep, view  # noqa: E402
from genba.runner import run_app  # noqa: E402

app = typer.Typer(
    name="genba",
    help="genba: simulate factory robot cells, train policies, export bundles, serve them to controllers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (calibrate, demo, expert, hses, policies, robustness, sweep, view):
    module.register(app)
app.add_typer(scenarios.app, name="scenarios")
app.add_typer(bridge.app, name="bridge")


def main() -> None:
    run_app(app, prog_name="genba")


if __name__ == "__main__":
    main()
