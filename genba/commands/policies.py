"""`genba train | eval | export | demos`: parse flags, call the library function, print one result.

`register(app)` adds the verbs to the `genba` command.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from genba.commands.options import (
    OBS_HELP,
    Observe,
    obs_option,
    play_option,
    progress_option,
    randomization_option,
    show_progress,
)
from genba.errors import AppError, Interrupted
from genba.jsonfile import check_output_file, json_option, write_json


def train_cmd(
    scenario: str = typer.Argument(..., help="built-in scenario (reach, conveyor-pick), YAML path, or toy env (toy-target, toy-reach)"),
    algo: Optional[str] = typer.Option(None, help="ppo | sac | td3 | tqc | bc (default: the preset's)"),
    her: Optional[bool] = typer.Option(None, "--her/--no-her", help="Hindsight Experience Replay (goal-conditioned scenarios)"),
    steps: Optional[int] = typer.Option(None, help="env steps to train for (default: the preset's)"),
    envs: Optional[int] = typer.Option(None, "--envs", help="parallel envs (subprocesses when > 1)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: Optional[int] = typer.Option(None, min=0, help="random seed (default 0)"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/SCENARIO-ALGO-sSEED-TIME)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its latest checkpoint"),
    init: Optional[str] = typer.Option(None, help="run directory whose policy initialises the actor (BC warm start)"),
    demos: Optional[Path] = typer.Option(None, help="demonstrations .npz (from `genba demos`)"),
    robot: Optional[str] = typer.Option(None, help="robot model override (panda, gp7)"),
    obs: Optional[Observe] = typer.Option(None, "--obs", help=OBS_HELP + " (default: the preset's, else state)"),
    randomization: Optional[str] = typer.Option(None, "--randomization", help="train under this domain-randomisation profile "
                                                "(shop-floor, or a YAML path) merged over the scenario's randomization section "
                                                "(default: the preset's)"),
    stop_at_success: Optional[float] = typer.Option(None, help="stop once an evaluation reaches this success rate"),
    set_: list[str] = typer.Option([], "--set", help="override any config key: --set hyperparams.batch_size=512"),
    preset: Optional[Path] = typer.Option(None, help="preset YAML to use instead of the scenario's shipped one "
                                          "(e.g. the best.yaml a `genba sweep` wrote)"),
    progress: Optional[bool] = progress_option(),
    json_path: Optional[Path] = json_option("write the training summary as JSON"),
) -> None:
    """Train a policy with SB3 (or behaviour cloning) using the tuned preset of the scenario's task type.

    A scenario file of your own gets the shipped preset of its task type, scaled to its episode length and part
    count; a `preset:` line on stderr says which preset and why (config.yaml keeps it).
    """
    from policies.config import parse_overrides, resolve_config, run_scenario
    from policies.policy import cell_file_gone
    from policies.train import train
    from scenarios import names_a_file

    if resume:
        if out is None:
            raise AppError("--resume needs --out RUN_DIR (the run to continue)")
        from policies.rundir import RunDir

        cfg_on_disk = RunDir.open(out).config()
        recorded, moved_to = cfg_on_disk.scenario, None
        if recorded not in (scenario, run_scenario(scenario)):
            if not (cell_file_gone(recorded) and names_a_file(scenario)):
                raise AppError(f"--resume: {out} trains {recorded!r}, not {scenario!r}")
            moved_to = run_scenario(scenario)  # the run's cell file is gone from where it was: on with it where it is now
        fixed = {"--algo": algo, "--her": her, "--envs": envs, "--seed": seed, "--init": init, "--demos": demos, "--obs": obs,
                 "--robot": robot, "--randomization": randomization, "--stop-at-success": stop_at_success, "--set": set_ or None, "--preset": preset}
        given = [flag for flag, value in fixed.items() if value is not None]
        if given:
            raise AppError(f"--resume continues {out} with its own config.yaml; drop {', '.join(given)} "
                             "(only --steps and --device may change)")
        typer.echo(f"preset: {cfg_on_disk.preset or 'not recorded'} (as {out / 'config.yaml'} says)", err=True)
        if moved_to is not None:
            typer.echo(f"{recorded} is not there any more: the run goes on with {moved_to}", err=True)
        with _resume_hint(scenario, out):
            summary = train(None, out, resume=True, progress=show_progress(progress), max_steps=steps, device=device,
                            scenario=moved_to)
    else:
        overrides = parse_overrides(set_)
        flags = {"her": her, "steps": steps, "n_envs": envs, "device": device, "seed": seed, "init": init,
                 "obs_mode": obs.value if obs is not None else None,
                 "demos": str(demos) if demos else None, "robot": robot, "randomization": randomization,
                 "stop_at_success": stop_at_success}
        overrides.update({k: v for k, v in flags.items() if v is not None})
        cfg = resolve_config(scenario, algo, overrides, preset_file=preset)
        typer.echo(f"preset: {cfg.preset}", err=True)
        if out is None:
            out = Path("runs") / f"{Path(scenario).stem}-{cfg.algo}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        typer.echo(f"run directory: {out}", err=True)
        with _resume_hint(scenario, out):
            summary = train(cfg, out, progress=show_progress(progress), argv=sys.argv)
    write_json(json_path, summary)
    best = summary.get("best_success")
    typer.echo(f"trained {summary['num_timesteps']:,} steps in {summary['wall_s']:.1f} s; best eval success "
               f"{best:.1%}; run: {out}" if best is not None and best >= 0 else f"trained {summary['num_timesteps']:,} steps; run: {out}")


@contextmanager
def _resume_hint(scenario: str, out: Path) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        command = f"genba train {shlex.quote(scenario)} --out {shlex.quote(str(out))} --resume"  # pasteable with spaces in it
        raise Interrupted(f"{out} keeps its last checkpoint; go on with: {command}") from None


def eval_cmd(
    target: Path = typer.Argument(..., help="run directory, snapshot directory, or bundle directory"),
    n: int = typer.Option(100, "-n", help="episodes"),
    seed: int = typer.Option(0, min=0, help="evaluation seed (episode i uses a fixed seed derived from it)"),
    video: Optional[Path] = typer.Option(None, help="write an mp4 of the first --video-episodes episodes"),
    video_episodes: int = typer.Option(3, min=1, help="episodes to record when --video is given"),
    scenario: Optional[str] = typer.Option(None, help="evaluate on this scenario instead of the policy's own"),
    robot: Optional[str] = typer.Option(None, help="robot model override"),
    which: str = typer.Option("best", help="for a run directory: best | final | latest"),
    device: str = typer.Option("cpu", help="cpu | cuda | auto"),
    obs: Observe = obs_option(),
    randomization: Optional[str] = randomization_option(),
    play: bool = play_option(),
    progress: Optional[bool] = progress_option(),
    json_path: Optional[Path] = json_option("write the results as JSON"),
) -> None:
    """Success rate (95% Wilson interval), mean return, cycle time and collisions of a policy."""
    import torch

    from policies.evaluate import evaluate

    torch.set_num_threads(1)
    if n < 1:
        raise AppError(f"-n must be >= 1, got {n}")
    result, desc = evaluate(target, n=n, seed=seed, scenario=scenario, robot=robot, video=video,
                            video_episodes=video_episodes, which=which, device=device, obs_mode=obs.value,
                            randomization=randomization, play=play, progress=show_progress(progress))
    write_json(json_path, {"target": str(target), **desc, "seed": seed, **result.to_dict(),
                            "video": str(video) if video else None})
    typer.echo(f"{desc['scenario']}: {result.line()}")
    if video:
        typer.echo(f"video: {video}")


def export_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    out: Path = typer.Option(..., "-o", "--out", help="bundle directory to write"),
    which: str = typer.Option("best", help="best | final | latest snapshot of the run"),
    name: Optional[str] = typer.Option(None, help="bundle name (default: the directory name)"),
    force: bool = typer.Option(False, help="replace an existing bundle directory"),
    scenario: Optional[str] = typer.Option(None, help="the run's cell file where it is now (a run moved from another "
                                                      "machine); default: the one it was trained on"),
) -> None:
    """Write a policy bundle (policy.onnx, policy.pt, manifest.json) from a run."""
    from policies.run_export import export_run

    path = export_run(run, out, which=which, name=name, overwrite=force, scenario=scenario)
    manifest = json.loads((path / "manifest.json").read_text())
    check = manifest["policy"]["export_check"]
    images = "".join(f"{i['key']} {'x'.join(map(str, i['shape']))} + " for i in manifest["observation"].get("images") or [])
    typer.echo(f"bundle {path}: {images}obs {manifest['observation']['dim']} -> action {manifest['action']['dim']} "
               f"({manifest['action']['kind']}), spec {manifest['spec_hash'][:12]}, max |onnx - torch| "
               f"{check['max_abs_diff_onnx']:.1e} on {check['observations']}")


def demos_cmd(
    scenario: str = typer.Argument(..., help="scenario to record the scripted expert on"),
    n: int = typer.Option(..., "-n", help="episodes"),
    out: Path = typer.Option(..., "-o", "--out", help="output .npz", callback=check_output_file),
    robot: Optional[str] = typer.Option(None, help="robot model override"),
    seed: int = typer.Option(0, min=0, help="first episode seed"),
    noise: float = typer.Option(0.0, min=0.0, help="DART: std of noise on the expert's executed motion (labels stay clean)"),
    randomization: Optional[str] = randomization_option(),
    force: bool = typer.Option(False, help="overwrite an existing file"),
    progress: Optional[bool] = progress_option(),
    json_path: Optional[Path] = json_option("write a summary as JSON"),
) -> None:
    """Record scripted-expert episodes for behaviour cloning (`genba train --algo bc --demos FILE`)."""
    from policies.demos import demos_path, record_demos, save_demos

    if n < 1:
        raise AppError(f"-n must be >= 1, got {n}")
    if demos_path(out).exists() and not force:  # -o x writes x.npz: x.npz is what --force would overwrite
        raise AppError(f"{demos_path(out)} exists; pass --force to overwrite it")
    t0 = time.monotonic()
    demos = record_demos(scenario, robot, n, seed=seed, progress=show_progress(progress), noise=noise, randomization=randomization)
    path = save_demos(demos, out)
    rate = float(demos.episode_success.mean())
    summary = {"scenario": scenario, "episodes": demos.n_episodes, "transitions": len(demos), "expert_success": rate,
               "file": str(path), "wall_s": round(time.monotonic() - t0, 3)}
    write_json(json_path, summary)
    typer.echo(f"{demos.n_episodes} episodes, {len(demos):,} transitions, expert success {rate:.0%} -> {path}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("export")(export_cmd)
    app.command("demos")(demos_cmd)

