"""`genba scenarios list | show | validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer
import yaml
from rich.console import Console
from rich.table import Table

from scenarios.loader import ScenarioError, builtin_names, load_scenario, scenario_hash
from scenarios.naming import ROBOT_MODELS, env_id
from scenarios.schema import Scenario

app = typer.Typer(help="List, show and validate scenario files (factory cells).", no_args_is_help=True)
console = Console()


@app.command("list")
def list_scenarios() -> None:
    """List the built-in scenarios with their env ids."""
    table = Table(title="built-in scenarios")
    for col in ("name", "env ids", "robot", "task", "description"):
        table.add_column(col)
    for name in builtin_names():
        s = load_scenario(name)
        ids = [env_id(s.name, s.version)] + [env_id(s.name, s.version, r) for r in ROBOT_MODELS if r != s.robot.model]
        table.add_row(name, "\n".join(ids), s.robot.model, s.task.type, s.description)
    console.print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="built-in name or path to a YAML file")) -> None:
    """Print a scenario with every default filled in, and its content hash."""
    s = load_scenario(name)
    typer.echo(f"# {s.env_id}  sha256={scenario_hash(s)}")
    typer.echo(yaml.safe_dump(json.loads(s.model_dump_json()), sort_keys=False))


@app.command("validate")
def validate(files: List[Path] = typer.Argument(..., help="scenario YAML files")) -> None:
    """Check scenario files against the schema; exit 1 if any is invalid."""
    bad = 0
    for path in files:
        try:
            s = load_scenario(str(path))
        except ScenarioError as exc:
            bad += 1
            typer.secho(f"invalid: {exc}", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"ok: {path} ({s.name} v{s.version}, sha256 {scenario_hash(s)[:12]})")
    if bad:
        raise typer.Exit(1)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of scenario files (every key, its unit and its bounds)."""
    typer.echo(json.dumps(Scenario.model_json_schema(), indent=2))
