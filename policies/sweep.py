"""Hyperparameter and seed sweeps on Optuna: the study, the worker loop, the objective, the results.

A study records what it sweeps (cell, algorithm, search space, trial count, fixed overrides) in its
user attributes, so a worker needs only the storage and the study name to join it from any node.
Each trial is an ordinary training run (policies.train) in `<sweep dir>/trials/trial-NNNN`; it reports
every evaluation to Optuna and is pruned by the median rule. The objective is the best evaluation's
success rate, minus cycle time x CYCLE_TIE_BREAK, so cycle time only orders equal success rates.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from policies.config import _merge, resolve_config
from policies.evaluate import mean_interval
from policies.rundir import RunDir, process_alive
from policies.sweep_space import SweepError, set_nested, suggest
from policies.sweep_storage import MAX_RETRY
from policies.train import train

# Success rates differ by at least 1/eval_episodes (>= 0.001); 1e-6 x a cycle of even 100 s stays below that.
CYCLE_TIE_BREAK = 1e-6
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_S = 1.0
MAX_FAILS_IN_A_ROW = 3  # a worker whose trials keep failing (bad config, broken env) stops instead of looping


def score(record: dict[str, Any]) -> float:
    cycle = record.get("mean_cycle_time_s")
    return float(record["success_rate"]) - CYCLE_TIE_BREAK * float(cycle or 0.0)


def create_study(storage, name: str, *, cell: str, algo: str, space: dict, trials: int, sweep_dir: Path,
                 overrides: dict[str, Any] | None = None, preset_file: str | None = None, seeds: int | None = None) -> optuna.Study:
    """A new study holding everything a worker needs; trials of a seed sweep are enqueued up front."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepError(f"study {name!r} already exists in this storage; join it with `genba sweep --worker --study {name}` "
                         "or choose another --study") from None
    cfg = resolve_config(cell, algo, overrides, preset_file)  # a bad cell, algo or override fails here, not in every worker
    attrs = {"cell": cell, "algo": cfg.algo, "space": space, "trials": trials, "sweep_dir": str(sweep_dir.resolve()),
             "overrides": overrides or {}, "preset_file": str(Path(preset_file).resolve()) if preset_file else None,
             "mode": "seeds" if seeds else "search"}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    if seeds:
        for i in range(seeds):
            study.enqueue_trial({"seed": cfg.seed + i})
    return study


def load_study(storage, name: str) -> optuna.Study:
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.TPESampler(),
                                  pruner=optuna.pruners.MedianPruner())
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SweepError(f"no study {name!r} in this storage" + (f"; it holds {', '.join(names)}" if names else "")) from None
    if "cell" not in study.user_attrs:
        raise SweepError(f"study {name!r} was not made by `genba sweep` (no cell recorded)")
    if study.user_attrs["mode"] == "seeds":
        study.pruner = optuna.pruners.NopPruner()  # every seed runs to the end: the point is the spread
    return study


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}


def run_worker(study: optuna.Study, out: Path | None = None) -> int:
    """Run trials until the study has its N finished (complete or pruned) trials; returns how many ran here.

    A worker never quits while another's trial runs: that trial's worker may die, and its retry needs
    someone to run it. Stale trials (heartbeat storages) are failed and re-enqueued on every pass.
    """
    n = int(study.user_attrs["trials"])
    ran = fails = 0
    while True:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9: a line in every worker log at every pass
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        fail_orphans(study)
        c = counts(study)
        finished = c["complete"] + c["pruned"]
        if finished >= n:
            return ran
        if c["waiting"] == 0 and finished + c["running"] >= n:
            time.sleep(POLL_S)
            continue
        # catch: a trial that raises is recorded as failed and the worker goes on to the next one
        study.optimize(lambda trial: objective(trial, out), n_trials=1, catch=(Exception,), gc_after_trial=True)
        ran += 1
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker_pid") == os.getpid()]
        fails = fails + 1 if mine and mine[-1].state == TrialState.FAIL else 0
        if fails >= MAX_FAILS_IN_A_ROW:
            raise SweepError(f"{fails} trials in a row failed in this worker (last: trial {mine[-1].number}, "
                             "its error is in this worker's log)")


def objective(trial: optuna.Trial, out: Path | None = None) -> float:
    a = trial.study.user_attrs
    trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")
    trial.set_user_attr("worker_pid", os.getpid())  # the local coordinator fails the trials of a worker that died
    overrides = _merge(a["overrides"], suggest(trial, a["space"]))
    if a["mode"] == "seeds":
        set_nested(overrides, "seed", trial.suggest_int("seed", 0, 2**31 - 1))
    cfg = resolve_config(a["cell"], a["algo"], overrides, a["preset_file"])
    run_dir = Path(out or a["sweep_dir"]) / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))

    def report(record: dict[str, Any]) -> None:
        trial.report(score(record), step=int(record["steps"]))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at {record['steps']} steps (success {record['success_rate']:.0%})")

    try:
        train(cfg, run_dir, progress=False, argv=["genba", "sweep", "--study", trial.study.study_name], on_eval=report)
    finally:
        _record_best(trial, RunDir(run_dir))
    return trial.user_attrs["score"]


def _record_best(trial: optuna.Trial, run: RunDir) -> None:
    history = run.eval_history()
    if not history:
        return
    best = max(history, key=score)
    trial.set_user_attr("score", score(best))
    trial.set_user_attr("success", best["success_rate"])
    trial.set_user_attr("success_ci95", best["success_ci95"])
    trial.set_user_attr("cycle_time_s", best.get("mean_cycle_time_s"))
    trial.set_user_attr("eval_episodes", best["episodes"])


def fail_trials_of(study: optuna.Study, pid: int) -> list[int]:
    """Fail the running trials of a dead local worker and enqueue them again (what a heartbeat does on a database)."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker_pid") == pid and t.user_attrs.get("worker", "").startswith(platform.node() + ":"):
            try:
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it finished (or a heartbeat failed it) in the meantime
            retry(study, study._storage.get_trial(t._trial_id))
            failed.append(t.number)
    return failed


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail (and enqueue again) the running trials whose worker ran on this node and is gone: what a sweep
    killed as a whole (coordinator and workers, e.g. a lost session) leaves behind, heartbeat or not."""
    node = platform.node() + ":"
    pids = {t.user_attrs.get("worker_pid") for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("worker", "").startswith(node)}
    return [n for pid in sorted(p for p in pids if p is not None and not _alive(p)) for n in fail_trials_of(study, pid)]


def _alive(pid: int) -> bool:
    """Whether `pid` is still a sweep worker (not gone, not a zombie, not reused by another program)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return b"sweep" in cmdline.read_bytes()
        except OSError:
            return False
    return process_alive(pid)


# --- results ------------------------------------------------------------------------------------------

def trial_run_dir(trial: optuna.trial.FrozenTrial, sweep_dir: Path) -> str | None:
    """Where the trial's run is: as its worker recorded it, or in `sweep_dir`'s trials/ if the sweep folder was moved."""
    recorded = trial.user_attrs.get("run_dir")
    if recorded is None or Path(recorded).is_dir():
        return recorded
    moved = sweep_dir / "trials" / Path(recorded).name
    return str(moved.resolve()) if moved.is_dir() else recorded


def trial_rows(study: optuna.Study, sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number, "state": t.state.name.lower(), "success": t.user_attrs.get("success"),
                     "success_ci95": t.user_attrs.get("success_ci95"), "cycle_time_s": t.user_attrs.get("cycle_time_s"),
                     "value": t.value, "params": t.params, "wall_s": round(wall, 1) if wall is not None else None,
                     "retry_of": t.system_attrs.get("failed_trial"), "run_dir": trial_run_dir(t, sweep_dir)})
    return rows


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def write_best_preset(study: optuna.Study, path: Path, sweep_dir: Path) -> Path | None:
    """The best trial's resolved config as a preset `genba train CELL --preset FILE` reproduces it from."""
    best = best_trial(study)
    if best is None:
        return None
    cfg = RunDir.open(trial_run_dir(best, sweep_dir)).config().to_dict()
    algo = cfg.pop("algo")
    cfg.pop("scenario")
    cfg.pop("preset", None)  # where the trial's settings came from: this file is now their source
    lo, hi = best.user_attrs["success_ci95"]
    cycle = best.user_attrs.get("cycle_time_s")
    header = (f"# Best preset of `genba sweep` study {study.study_name!r}: trial {best.number}, success "
              f"{best.user_attrs['success']:.1%} [{lo:.1%}, {hi:.1%}] over {best.user_attrs['eval_episodes']} episodes"
              + (f", cycle time {cycle:.2f} s" if cycle is not None else "") + ".\n"
              f"# Train it: genba train {study.user_attrs['cell']} --preset {path.name}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"default_algo": algo, "common": {}, "algos": {algo: cfg}}, sort_keys=False))
    return path


def seed_stats(values: list[float | None], low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Mean and 95% t-interval of the mean over seeds (None where fewer than two values), kept within [low, high]."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"n": 0, "mean": None, "ci95": None}
    ci = mean_interval(values)
    if ci is not None:
        ci = (max(ci[0], low) if low is not None else ci[0], min(ci[1], high) if high is not None else ci[1])
    return {"n": len(values), "mean": statistics.fmean(values), "ci95": list(ci) if ci else None}


def seed_summary(study: optuna.Study) -> dict[str, Any]:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {"seeds": sorted(t.params["seed"] for t in done),
            "success": seed_stats([t.user_attrs.get("success") for t in done], 0.0, 1.0),  # a rate: within 0..1
            "cycle_time_s": seed_stats([t.user_attrs.get("cycle_time_s") for t in done])}


def plot_history(study: optuna.Study, path: Path) -> Path | None:
    """Optuna's optimisation-history plot as a PNG (None where matplotlib is not installed)."""
    try:
        import matplotlib  # lazy: plotting is optional and heavy

        matplotlib.use("Agg")
        from optuna.visualization.matplotlib import plot_optimization_history  # lazy: needs matplotlib
    except ImportError:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = plot_optimization_history(study)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    matplotlib.pyplot.close(ax.figure)
    return path
