"""`genba demo`: the main job end to end.

train the cell with its shipped preset -> evaluate with factory KPIs -> export a bundle -> serve it over
the ZeroMQ bridge on loopback -> run the digital twin through it -> stop everything -> one summary table.
Each stage is the same CLI verb a user would run, in its own process, so the demo exercises exactly
what the README documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from genba.errors import AppError
from genba.jsonfile import write_json
from genba.server_process import ServerProcess, ServerStartError, child_env


class DemoError(AppError):
    """A stage of the demo failed; the message names the stage and where its output is."""


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    scenario: str = typer.Option(os.environ.get("GENBA_DEMO_SCENARIO", "conveyor-pick"),
                                 help="cell to run (env GENBA_DEMO_SCENARIO)"),
    robot: Optional[str] = typer.Option(None, help="robot override: panda, gp7"),
    eval_episodes: int = typer.Option(50, min=1, help="episodes of `genba eval` in sim"),
    twin_episodes: int = typer.Option(10, min=1, help="episodes of the twin through the bridge"),
    long: bool = typer.Option(os.environ.get("GENBA_DEMO_LONG", "") == "1", "--long",
                              help="longer, better run: 4x expert demos for training, 200 eval and 50 twin episodes "
                                   "(env GENBA_DEMO_LONG=1)"),
    train_set: List[str] = typer.Option([], "--train-set", help="extra preset override for training, KEY=VALUE"),
    speed: float = typer.Option(1.0, help="twin pacing: 1 = real time (as a controller runs), 0 = as fast as possible"),
    out: Optional[Path] = typer.Option(None, help="where runs, bundle and figures go (default runs/demo-SCENARIO-TIME)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="also write the summary figures here"),
) -> None:
    """Train, evaluate, export, serve over the bridge and drive the digital twin; print one summary."""
    if long:
        eval_episodes, twin_episodes = max(eval_episodes, 200), max(twin_episodes, 50)
        train_set = ["bc.demo_episodes=400", *train_set]
    out = out or Path("runs") / f"demo-{Path(scenario).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists():
        raise DemoError(f"{out} exists; choose another --out (a demo never overwrites a run)")
    out.mkdir(parents=True)
    robot_args = ["--robot", robot] if robot else []
    started = time.perf_counter()

    _stage(1, "train", f"{scenario} with its shipped preset")
    train = _genba(["train", scenario, "--out", str(out / "run"), "--json", str(out / "train.json"), *robot_args,
                    *[a for kv in train_set for a in ("--set", kv)]], out)
    train_fig = json.loads((out / "train.json").read_text())

    _stage(2, "evaluate", f"{eval_episodes} seeded episodes in sim")
    _genba(["eval", str(out / "run"), "-n", str(eval_episodes), "--json", str(out / "eval.json")], out)
    sim_fig = json.loads((out / "eval.json").read_text())
    sim_fig = sim_fig.get("result", sim_fig)

    _stage(3, "export", "ONNX + TorchScript + manifest")
    bundle = out / f"{Path(scenario).stem}-bundle"
    _genba(["export", str(out / "run"), "-o", str(bundle)], out)

    _stage(4, "serve", "bridge server on loopback")
    server = _start_server(bundle, out)
    try:
        _stage(5, "twin", f"{twin_episodes} episodes of the PyBullet controller through the bridge")
        _genba(["bridge", "twin", scenario, "--connect", server.endpoint, "--episodes",
                str(twin_episodes), "--speed", str(speed), "--json", str(out / "twin.json"), *robot_args], out)
    finally:
        _stage(6, "stop", "bridge server")
        server.stop()
    twin_fig = json.loads((out / "twin.json").read_text())

    summary = _summary(scenario, train, train_fig, sim_fig, twin_fig, time.perf_counter() - started, bundle)
    write_json(out / "summary.json", summary)
    write_json(json_path, summary)
    _print_summary(summary, out)
    if not summary["twin_within_sim_ci"]:
        raise DemoError("the twin's success rate through the bridge fell below the sim's 95% interval")


def _stage(n: int, name: str, what: str) -> None:
    typer.secho(f"[{n}/6] {name}: {what}", fg=typer.colors.CYAN, err=True)


def _genba(args: list[str], out: Path) -> float:
    """Run one CLI verb in its own process; its progress shows live. Returns its wall-clock seconds."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "genba", *args], env=child_env())
    if result.returncode != 0:
        raise DemoError(f"`genba {' '.join(args[:2])}` failed (exit {result.returncode}); outputs so far are in {out}")
    return time.perf_counter() - start


def _start_server(bundle: Path, out: Path) -> ServerProcess:
    with open(out / "server.log", "w") as log:  # the child keeps its own copy of the descriptor
        try:
            server = ServerProcess([bundle], "--telemetry", "off", "--device", "cpu", stderr=log)
        except ServerStartError:
            raise DemoError(f"the bridge server did not start; see {out / 'server.log'}") from None
    typer.echo(f"      serving {bundle.name} at {server.endpoint} (pid {server.proc.pid})", err=True)
    return server


def _summary(scenario, train_wall, train_fig, sim_fig, twin_fig, total_wall, bundle) -> dict:
    low, high = sim_fig["success_ci95"]
    rt = twin_fig.get("round_trip", {})
    interventions = twin_fig.get("safety_interventions", {})
    return {
        "scenario": scenario,
        "training_wall_s": train_fig.get("wall_s", train_wall),
        "training_env_steps": train_fig.get("num_timesteps"),
        "sim_success_rate": sim_fig["success_rate"], "sim_success_ci95": [low, high],
        "sim_episodes": sim_fig["episodes"], "sim_cycle_time_s": sim_fig.get("mean_cycle_time_s"),
        "twin_success_rate": twin_fig["success_rate"], "twin_success_ci95": twin_fig.get("success_ci95"),
        "twin_episodes": twin_fig["episodes"], "twin_cycle_time_s": twin_fig.get("mean_cycle_time_s"),
        "round_trip_p50_ms": rt.get("p50_us", float("nan")) / 1e3, "round_trip_p99_ms": rt.get("p99_us", float("nan")) / 1e3,
        "deadline_misses": twin_fig.get("deadline_misses"), "control_steps": twin_fig.get("control_steps"),
        "safety_interventions": sum(v for v in interventions.values() if isinstance(v, (int, float))),
        "steps_changed_by_safety": twin_fig.get("steps_changed_by_safety"),
        # "No worse than the sim's beyond its confidence interval": at or above the sim's lower 95% bound.
        "twin_within_sim_ci": twin_fig["success_rate"] >= low,
        "total_wall_s": total_wall, "bundle": str(bundle),
    }


def _print_summary(s: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x, ci=None):
        return f"{x:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")

    def sec(x):
        return "n/a" if x is None else f"{x:.2f} s"

    table = Table(title=f"genba demo: {s['scenario']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("training time", f"{s['training_wall_s']:.1f} s ({s['training_env_steps']:,} env steps)")
    table.add_row(f"sim success ({s['sim_episodes']} ep)", pct(s["sim_success_rate"], s["sim_success_ci95"]))
    table.add_row("sim cycle time", sec(s["sim_cycle_time_s"]))
    table.add_row(f"bridge success ({s['twin_episodes']} ep)", pct(s["twin_success_rate"], s["twin_success_ci95"]))
    table.add_row("bridge cycle time", sec(s["twin_cycle_time_s"]))
    table.add_row("round trip p50 / p99", f"{s['round_trip_p50_ms']:.2f} / {s['round_trip_p99_ms']:.2f} ms")
    table.add_row("deadline misses", f"{s['deadline_misses']} of {s['control_steps']} steps")
    table.add_row("safety interventions", f"{s['safety_interventions']} ({s['steps_changed_by_safety']} steps changed)")
    table.add_row("twin vs sim", "within the sim's 95% interval" if s["twin_within_sim_ci"] else "BELOW the sim's interval")
    table.add_row("total", f"{s['total_wall_s']:.0f} s")
    Console(stderr=False).print(table)
    typer.echo(f"outputs: {out}  (bundle: {s['bundle']})")
