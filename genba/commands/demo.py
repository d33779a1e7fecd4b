"""`genba demo`: the main job end to end.

train the cell with its shipped preset -> (--finetune: RL fine-tuning of that clone for cycle time) ->
evaluate with factory KPIs -> export a bundle -> serve it over the ZeroMQ bridge on loopback -> run the
digital twin through it -> stop everything -> one summary table.
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
import yaml

from genba.errors import AppError
from genba.jsonfile import json_option, write_json
from genba.server_process import ServerProcess, ServerStartError, child_env, die_with_parent, stop_process


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
                              help="longer, better run: twice the preset's expert demos for training, 200 eval and 50 "
                                   "twin episodes (env GENBA_DEMO_LONG=1)"),
    train_set: List[str] = typer.Option([], "--train-set", help="extra preset override for training, KEY=VALUE"),
    finetune: float = typer.Option(0.0, "--finetune", min=0.0, metavar="MINUTES",
                                   help="also fine-tune the clone for cycle time this many minutes (the preset's residual "
                                        "PPO, `genba train --algo ppo --init`); the fine-tuned policy is the one served"),
    speed: float = typer.Option(1.0, help="twin pacing: 1 = real time (as a controller runs), 0 = as fast as possible"),
    out: Optional[Path] = typer.Option(None, help="where runs, bundle and figures go (default runs/demo-SCENARIO-TIME)"),
    json_path: Optional[Path] = json_option("also write the summary figures here"),
) -> None:
    """Train, evaluate, export, serve over the bridge and drive the digital twin; print one summary."""
    if long:
        eval_episodes, twin_episodes = max(eval_episodes, 200), max(twin_episodes, 50)
        train_set = [f"bc.demo_episodes={2 * _preset_demo_episodes(scenario, train_set)}", *train_set]
    if finetune:
        _check_fine_tunable(scenario)
    out = out or Path("runs") / f"demo-{Path(scenario).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists():
        raise DemoError(f"{out} exists; choose another --out (a demo never overwrites a run)")
    out.mkdir(parents=True)
    robot_args = ["--robot", robot] if robot else []
    started = time.perf_counter()
    stage = _Stages(7 if finetune else 6)

    stage("train", f"{scenario} with its shipped preset")
    train = _genba(["train", scenario, "--out", str(out / "run"), "--json", str(out / "train.json"), *robot_args,
                    *[a for kv in train_set for a in ("--set", kv)]], out)
    train_fig = json.loads((out / "train.json").read_text())
    served = out / "run"
    if finetune:
        stage("fine-tune", f"RL on top of the clone for cycle time, {finetune:g} min")
        served = out / "finetuned"
        _genba(["train", scenario, "--algo", "ppo", "--init", str(out / "run"), "--out", str(served), *robot_args,
                "--set", f"max_wall_s={finetune * 60}", "--json", str(out / "finetune.json")], out)

    stage("evaluate", f"{eval_episodes} seeded episodes in sim" + (": expert, clone and fine-tuned" if finetune else ""))
    sim_fig = _evaluate(served, eval_episodes, out / "eval.json", out)
    compared = _compare_with_script(scenario, served, out, eval_episodes, robot_args, sim_fig) if finetune else None

    stage("export", "ONNX + TorchScript + manifest")
    bundle = out / f"{Path(scenario).stem}-bundle"
    _genba(["export", str(served), "-o", str(bundle)], out)

    stage("serve", "bridge server on loopback")
    server = _start_server(bundle, out)
    try:
        stage("twin", f"{twin_episodes} episodes of the PyBullet controller through the bridge")
        _genba(["bridge", "twin", scenario, "--connect", server.endpoint, "--episodes",
                str(twin_episodes), "--speed", str(speed), "--json", str(out / "twin.json"), *robot_args], out)
    finally:
        stage("stop", "bridge server")
        server.stop()
    twin_fig = json.loads((out / "twin.json").read_text())

    summary = _summary(scenario, train, train_fig, sim_fig, twin_fig, time.perf_counter() - started, bundle)
    if compared:
        tuned = json.loads((out / "finetune.json").read_text())
        summary.update(finetune_wall_s=tuned["wall_s"], finetune_env_steps=tuned["num_timesteps"], compared=compared)
    write_json(out / "summary.json", summary)
    write_json(json_path, summary)
    _print_summary(summary, out)
    if not summary["twin_within_sim_ci"]:
        raise DemoError("the twin's success rate through the bridge fell below the sim's 95% interval")


class _Stages:
    """Prints "[n/total] name: what" for each stage as it starts."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def __call__(self, name: str, what: str) -> None:
        self.done += 1
        typer.secho(f"[{self.done}/{self.total}] {name}: {what}", fg=typer.colors.CYAN, err=True)


def _preset_demo_episodes(scenario: str, train_set: list[str]) -> int:
    """The expert demos training records for this cell, as `genba train` resolves its preset (scaled to the cell)."""
    from policies.config import parse_overrides, resolve_config

    return resolve_config(scenario, overrides=parse_overrides(train_set)).bc.demo_episodes


def _check_fine_tunable(scenario: str) -> None:
    from policies.config import load_preset

    preset, path = load_preset(scenario)
    if not ((preset.get("algos", {}).get("ppo") or {}).get("with_init") or {}).get("residual"):
        raise DemoError(f"--finetune: the preset of {scenario} ({path}) has no residual fine-tuning block (algos.ppo.with_init "
                        "with residual:); policies/README.md, 'Fine-tuning beyond the script', shows one")


def _evaluate(run: Path, episodes: int, json_path: Path, out: Path, *extra: str) -> dict:
    """`genba eval RUN` on the demo's episodes (eval seed 0); its result figures."""
    _genba(["eval", str(run), "-n", str(episodes), "--json", str(json_path), *extra], out)
    figures = json.loads(json_path.read_text())
    return figures.get("result", figures)


def _compare_with_script(scenario: str, finetuned: Path, out: Path, episodes: int, robot_args: list[str], tuned: dict) -> dict:
    """Expert, clone and fine-tuned policy on the same episodes and observations: success and cycle time of each."""
    from policies.evaluate import EVAL_SEED_OFFSET  # genba eval's episode i is genba expert's EVAL_SEED_OFFSET + i

    obs = yaml.safe_load((finetuned / "config.yaml").read_text())["obs_mode"]  # the clone may have learnt on another
    _genba(["expert", scenario, "-n", str(episodes), "--seed", str(EVAL_SEED_OFFSET), "--obs", obs,
            "--json", str(out / "expert.json"), *robot_args], out)
    expert = json.loads((out / "expert.json").read_text())
    clone = _evaluate(out / "run", episodes, out / "eval-clone.json", out, "--obs", obs)
    return {name: {"success_rate": fig["success_rate"], "cycle_time_s": fig.get("mean_cycle_time_s")}
            for name, fig in (("expert", expert), ("clone", clone), ("fine-tuned", tuned))}


def _genba(args: list[str], out: Path) -> float:
    """Run one CLI verb in its own process; its progress shows live. Returns its wall-clock seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "genba", *args], env=child_env(),
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    try:
        returncode = proc.wait()
    except BaseException:  # Ctrl-C or SIGTERM: the verb stops as it would alone (its checkpoints, its own children)
        stop_process(proc)
        raise
    if returncode != 0:
        raise DemoError(f"`genba {' '.join(args[:2])}` failed (exit {returncode}); outputs so far are in {out}")
    return time.perf_counter() - start


def _start_server(bundle: Path, out: Path) -> ServerProcess:
    with open(out / "server.log", "w") as log:  # the child keeps its own copy of the descriptor
        try:
            server = ServerProcess([bundle], "--telemetry", "off", "--device", "cpu", stderr=log, die_with_this_process=True)
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
    if "finetune_wall_s" in s:
        table.add_row("fine-tuning time", f"{s['finetune_wall_s']:.1f} s ({s['finetune_env_steps']:,} env steps)")
    table.add_row(f"sim success ({s['sim_episodes']} ep)", pct(s["sim_success_rate"], s["sim_success_ci95"]))
    table.add_row("sim cycle time", sec(s["sim_cycle_time_s"]))
    for name, fig in s.get("compared", {}).items():
        table.add_row(f"{name}: success / cycle time", f"{fig['success_rate']:.1%} / {sec(fig['cycle_time_s'])}")
    table.add_row(f"bridge success ({s['twin_episodes']} ep)", pct(s["twin_success_rate"], s["twin_success_ci95"]))
    table.add_row("bridge cycle time", sec(s["twin_cycle_time_s"]))
    table.add_row("round trip p50 / p99", f"{s['round_trip_p50_ms']:.2f} / {s['round_trip_p99_ms']:.2f} ms")
    table.add_row("deadline misses", f"{s['deadline_misses']} of {s['control_steps']} steps")
    table.add_row("safety interventions", f"{s['safety_interventions']} ({s['steps_changed_by_safety']} steps changed)")
    table.add_row("twin vs sim", "within the sim's 95% interval" if s["twin_within_sim_ci"] else "BELOW the sim's interval")
    table.add_row("total", f"{s['total_wall_s']:.0f} s")
    Console(stderr=False).print(table)
    typer.echo(f"outputs: {out}  (bundle: {s['bundle']})")
