"""`genba sweep`: hyperparameter and seed sweeps on Optuna (policies.sweep), local or on a shared database.

    genba sweep CELL --algo ALGO --trials N --workers K [--space FILE] [--storage URL] [--study NAME]
    genba sweep CELL --seeds S                    the preset over S seeds: mean and 95% interval
    genba sweep --worker --study NAME --storage URL   join a study from any node (docs/sweeps.md)
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Optional

import typer

from genba.errors import AppError
from genba.jsonfile import json_option, write_json

DEFAULT_HEARTBEAT_S = 30.0
MAX_WORKERS_PER_CPU = 4  # local trial processes; more machines join with --worker


def sweep_cmd(
    cell: Optional[str] = typer.Argument(None, help="scenario to sweep (as `genba train` takes it); not with --worker"),
    algo: Optional[str] = typer.Option(None, help="ppo | sac | td3 | tqc | bc (default: the preset's)"),
    trials: int = typer.Option(20, help="finished (complete or pruned) trials the study runs to"),
    workers: int = typer.Option(1, help="worker processes on this machine (0: only create the study and watch; "
                                        "workers elsewhere run it)"),
    space: Optional[Path] = typer.Option(None, help="search space YAML (default: policies/sweep_spaces/ALGO.yaml)"),
    storage: Optional[str] = typer.Option(None, help="postgresql://USER:PW@HOST:PORT/DB, sqlite:///FILE.db or a journal file "
                                                     "(default: journal.log in the sweep directory)"),
    study: Optional[str] = typer.Option(None, help="study name (default: the sweep directory's name)"),
    worker: bool = typer.Option(False, "--worker", help="join --study in --storage and run its trials until it is done"),
    resume: bool = typer.Option(False, "--resume", help="continue the sweep in --out after its coordinator died: its "
                                "orphaned trials are failed and run again, finished ones kept, then the report"),
    seeds: Optional[int] = typer.Option(None, help="run the preset (no search) over this many seeds, from --seed on"),
    preset: Optional[Path] = typer.Option(None, help="preset YAML instead of the cell's shipped one"),
    set_: list[str] = typer.Option([], "--set", help="fixed config override for every trial: --set steps=20000"),
    out: Optional[Path] = typer.Option(None, help="sweep directory (default sweeps/CELL-ALGO-TIME); with --worker, "
                                                  "where this worker's trial runs go (default: the study's)"),
    heartbeat: float = typer.Option(DEFAULT_HEARTBEAT_S, help="seconds between a running trial's heartbeats on a database; "
                                                              "a trial silent for twice that is failed and retried"),
    json_path: Optional[Path] = json_option("write the sweep's results as JSON"),
) -> None:
    """Tune a preset with Optuna (TPE + median pruning), or check it across seeds."""
    from policies.sweep_storage import check_database_url, is_database, open_storage

    if not (math.isfinite(heartbeat) and heartbeat >= 1):  # NaN slipped past a plain `< 1` and failed in int()
        raise AppError(f"--heartbeat must be >= 1 s, got {heartbeat}")
    if storage is not None and is_database(storage):
        check_database_url(storage)
    if workers > MAX_WORKERS_PER_CPU * (os.cpu_count() or 1):  # each trains a policy: 1000 forked hundreds on 2 cores
        raise AppError(f"--workers {workers} is over {MAX_WORKERS_PER_CPU} per CPU of this machine ({os.cpu_count()}); "
                       "start workers on other machines with --worker")
    if worker:
        if not (study and storage):
            raise AppError("--worker needs --study NAME and --storage URL (the study to join)")
        if cell or seeds or space or set_ or preset:
            raise AppError("--worker takes its cell, space and trials from the study; drop CELL, --seeds, --space, --set, --preset")
        from policies.sweep import load_study, run_worker

        # SIGTERM (its coordinator stopping) ends a worker where it stands, not as Ctrl-C (genba.runner): Optuna marks
        # an interrupted trial FAIL, while one left RUNNING is failed and queued again with its parameters on resume.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ran = run_worker(load_study(open_storage(storage, heartbeat), study), out)
        typer.echo(f"worker done: ran {ran} trial(s) of study {study}")
        return
    if resume:
        if out is None or cell or seeds or space or set_ or preset:
            raise AppError("--resume continues the sweep in --out with its own study; give --out DIR (and --storage/--study "
                           "if it used them), not CELL, --seeds, --space, --set or --preset")
        _resume(out, workers, storage, study, heartbeat, json_path)
        return
    if not cell:
        raise AppError("give the CELL to sweep (or --worker --study NAME --storage URL to join a study)")
    if trials < 1 or workers < 0 or (seeds is not None and seeds < 1):
        raise AppError("--trials and --seeds must be >= 1, --workers >= 0")
    if workers > (seeds or trials):
        raise AppError(f"--workers {workers} is more than the {seeds or trials} trials to run (a worker runs one at a time)")
    _coordinate(cell, algo, trials, workers, space, storage, study, seeds, preset, set_, out, heartbeat, json_path)


def _coordinate(cell, algo, trials, workers, space, storage, study_name, seeds, preset, set_, out, heartbeat, json_path) -> None:
    from genba.sweep_workers import LocalWorkers
    from policies.config import _merge, parse_overrides, resolve_config
    from policies.sweep import create_study
    from policies.sweep_space import check_points, load_space
    from policies.sweep_storage import open_storage

    overrides = parse_overrides(set_)
    cfg = resolve_config(cell, algo, overrides, preset)
    space_data = {} if seeds else load_space(space, cfg.algo)
    check_points(space_data, str(space or "for " + cfg.algo), lambda point: resolve_config(cell, algo, _merge(overrides, point), preset))
    if out is None:
        out = Path("sweeps") / f"{Path(cell).stem}-{cfg.algo}-{'seeds-' if seeds else ''}{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise AppError(f"{out} already exists; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or str(out.resolve() / "journal.log")
    name = study_name or out.name
    study = create_study(open_storage(storage, heartbeat), name, cell=cell, algo=cfg.algo, space=space_data,
                         trials=seeds or trials, sweep_dir=out, overrides=overrides, preset_file=str(preset) if preset else None,
                         seeds=seeds)
    _record_study(out, storage, name)  # once the study exists: a storage that fails leaves no sweep directory
    typer.echo(f"sweep {out}: study {name!r}, {seeds or trials} trials, {workers} local worker(s)", err=True)
    typer.echo(f"preset: {cfg.preset}", err=True)
    if workers == 0:
        typer.echo(f"join from any node: genba sweep --worker --study {name} --storage '{storage}'", err=True)
    t0 = time.monotonic()
    LocalWorkers(study, storage, heartbeat, out, workers, lambda line: typer.echo(line, err=True)).run()
    _report(study, out, time.monotonic() - t0, json_path)


def _resume(out: Path, workers: int, storage: Optional[str], study_name: Optional[str], heartbeat: float,
            json_path: Optional[Path]) -> None:
    import optuna

    from genba.sweep_workers import LocalWorkers
    from policies.sweep import fail_orphans, load_study
    from policies.sweep_storage import is_database, open_storage

    recorded = _recorded_study(out)
    if storage is None and recorded is not None:  # the sweep's own study, wherever it lives
        if recorded["storage"] != recorded["storage_shown"]:
            raise AppError(f"--resume: {out}'s study {recorded['study']!r} is in {recorded['storage_shown']}; give --storage "
                           "with its password (it is not written to disk)")
        storage, study_name = recorded["storage"], study_name or recorded["study"]
        if not is_database(storage):
            storage = str(out.resolve() / storage)  # a name in the sweep folder (an absolute path stays as it is)
    storage = storage or str(out.resolve() / "journal.log")
    if storage.endswith("journal.log") and not Path(storage).is_file():
        raise AppError(f"--resume: {storage} does not exist; is {out} a sweep directory?")
    opened = open_storage(storage, heartbeat)
    if study_name is None:  # the study the sweep made: the only one in its journal, else named after the directory
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        study_name = names[0] if len(names) == 1 else out.name
    study = load_study(opened, study_name)
    orphans = fail_orphans(study)
    typer.echo(f"sweep {out}: resuming study {study.study_name!r}"
               + (f"; trials {orphans} of dead workers failed and queued again" if orphans else ""), err=True)
    t0 = time.monotonic()
    LocalWorkers(study, storage, heartbeat, out, workers, lambda line: typer.echo(line, err=True)).run()
    _report(study, out, time.monotonic() - t0, json_path)


STUDY_FILE = "study.json"  # where a sweep's study lives, so --resume needs only --out


def _record_study(out: Path, storage: str, name: str) -> None:
    from policies.rundir import atomic_write_text
    from policies.sweep_storage import is_database, redact

    if not is_database(storage):  # a journal file: in the sweep folder by its name (the folder may move), else absolute
        journal = Path(storage).resolve()
        storage = journal.name if journal.parent == out.resolve() else str(journal)
    shown = redact(storage)
    record = {"study": name, "storage_shown": shown, "storage": storage if shown == storage else None}  # no password on disk
    atomic_write_text(out / STUDY_FILE, json.dumps(record, indent=2) + "\n")


def _recorded_study(out: Path) -> Optional[dict]:
    path = out / STUDY_FILE
    if not path.is_file():
        return None  # a sweep made before the file was written
    try:
        record = json.loads(path.read_text())
        return {"study": str(record["study"]), "storage": record["storage"], "storage_shown": str(record["storage_shown"])}
    except (ValueError, KeyError, TypeError):
        raise AppError(f"--resume: {path} is damaged; give --storage and --study") from None


def _report(study, out: Path, wall_s: float, json_path: Optional[Path]) -> None:
    from policies.sweep import best_trial, plot_history, seed_summary, trial_rows, write_best_preset

    rows = trial_rows(study, out)
    typer.echo(trials_table(rows))
    result: dict[str, Any] = {"study": study.study_name, "cell": study.user_attrs["cell"], "algo": study.user_attrs["algo"],
                              "mode": study.user_attrs["mode"], "wall_s": round(wall_s, 1), "trials": rows}
    if study.user_attrs["mode"] == "seeds":
        result["seed_summary"] = s = seed_summary(study)
        typer.echo(f"over {s['success']['n']} seeds: success {_mean_ci(s['success'], '.1%')}; "
                   f"cycle time {_mean_ci(s['cycle_time_s'], '.2f')} s")
    else:
        best = best_trial(study)
        preset = write_best_preset(study, out / "best.yaml", out)
        plot = plot_history(study, out / "history.png")
        result.update(best_trial=best.number if best else None, best_params=best.params if best else None,
                      best_preset=str(preset) if preset else None, history_png=str(plot) if plot else None)
        if best is not None:
            typer.echo(f"best: trial {best.number}, success {best.user_attrs['success']:.1%}; preset {preset}"
                       + (f"; history {plot}" if plot else ""))
    write_json(out / "sweep.json", result)
    write_json(json_path, result)
    typer.echo(f"{len(rows)} trials in {wall_s:.0f} s; results: {out / 'sweep.json'}")


def _mean_ci(stat: dict, fmt: str) -> str:
    if stat["mean"] is None:
        return "n/a"
    ci = stat["ci95"]
    return f"{stat['mean']:{fmt}}" + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "")


def trials_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'#':>4} {'state':<9} {'success':>8} {'cycle s':>8} {'wall s':>7} {'retry of':>8}  params"]
    for r in rows:
        success = f"{r['success']:.1%}" if r["success"] is not None else "-"
        cycle = f"{r['cycle_time_s']:.2f}" if r["cycle_time_s"] is not None else "-"
        wall = f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "-"
        retry = str(r["retry_of"]) if r["retry_of"] is not None else ""
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"{r['number']:>4} {r['state']:<9} {success:>8} {cycle:>8} {wall:>7} {retry:>8}  {params}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
