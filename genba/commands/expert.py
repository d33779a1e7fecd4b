"""`genba expert`: run a cell's scripted expert and report factory KPIs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from genba.commands.options import Observe, obs_option, play_option, randomization_option, show_progress
from genba.jsonfile import json_option, write_json
from scenarios.naming import ROBOT_MODELS


def register(app: typer.Typer) -> None:
    app.command("expert")(expert)


def expert(
    scenario: str = typer.Argument(..., help="built-in scenario name or path to a YAML file"),
    episodes: int = typer.Option(100, "-n", "--episodes", min=1, help="number of episodes"),
    seed: int = typer.Option(0, min=0, help="seed of the first episode; episode i uses seed + i"),
    robot: Optional[str] = typer.Option(None, help=f"override the scenario's robot: {', '.join(ROBOT_MODELS)}"),
    obs: Observe = obs_option(),
    randomization: Optional[str] = randomization_option(),
    play: bool = play_option(),
    json_path: Optional[Path] = json_option("also write the figures to this JSON file"),
) -> None:
    """Run the scripted expert and print success rate (95% CI), mean cycle time and collisions."""
    # Imported on use: PyBullet and SB3 are not needed to parse flags or print --help.
    from tqdm import tqdm

    from policies.evaluate import run_episodes
    from sim import make_env
    from sim.experts import make_expert

    if robot is not None and robot not in ROBOT_MODELS:
        raise typer.BadParameter(f"unknown robot {robot!r}; valid: {', '.join(ROBOT_MODELS)}", param_hint="--robot")
    env = make_env(scenario, robot=robot, obs_mode=obs.value, randomization=randomization, play=play)
    bot = make_expert(env)
    start = time.perf_counter()
    with tqdm(total=episodes, unit="ep", desc="episodes", leave=False, disable=not show_progress(None)) as bar:  # alive
        result = run_episodes(env, bot, episodes, seed, env.scenario.physics.control_hz, on_episode=lambda: bar.update(1))
    wall = time.perf_counter() - start
    figures = {
        "scenario": env.scenario.name, "robot": env.robot.model.name, "obs_mode": obs.value,
        "randomization": randomization, "play": play, "seed": seed, **result.to_dict(),
        "wall_clock_s": wall, "env_steps_per_s": result.env_steps / wall,
    }
    env.close()
    typer.echo(f"expert on {figures['scenario']} ({figures['robot']}, {obs.value}): {result.line()}")
    typer.echo(f"{result.env_steps} env steps in {wall:.1f} s ({figures['env_steps_per_s']:.0f} steps/s)")
    write_json(json_path, figures)

