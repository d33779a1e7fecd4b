"""`genba demo`: the main job, end to end, with progress output and one summary table."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    scenario: str = typer.Option("conveyor-pick", help="cell to run"),
    episodes: int = typer.Option(20, "-n", "--episodes", min=1, help="expert episodes"),
) -> None:
    """List the scenarios and run the scripted expert on a cell with its KPIs."""
    from scenarios.cli import list_scenarios
    from sim.cli import expert

    list_scenarios()
    expert(scenario, episodes=episodes, seed=0, robot=None, json_path=None)
