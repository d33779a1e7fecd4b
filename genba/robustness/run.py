"""Evaluate a bundle on every row of a suite: in the simulator (policies.evaluate), or through the twin and a
bridge server (genba.twin) with the row's faults injected between them. Rows run in worker processes; every
row uses the same episode seeds, so rows differ only by what they perturb."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from genba.jsonfile import write_json
from genba.robustness.suite import Row, Suite
from genba.server_process import ServerProcess, worker_pool


@dataclass(frozen=True)
class Target:
    """What every row evaluates: the bundle on its cell, as the bundle's training saw it."""

    bundle: str
    scenario: str
    robot: str | None
    obs_mode: str
    episodes: int
    seed: int
    observe_command: bool = False  # the bundle's observation ends with the commanded tool target (its training)


def evaluate_row(target: Target, row: Row, endpoint: str | None) -> dict[str, Any]:
    """One row's figures; in a worker process (one compute thread)."""
    import torch

    torch.set_num_threads(1)
    started = time.monotonic()
    if endpoint is None:
        from policies.evaluate import evaluate

        result, _ = evaluate(target.bundle, n=target.episodes, seed=target.seed, scenario=target.scenario,
                             robot=target.robot, obs_mode=target.obs_mode, randomization=row.overlay(), play=row.nominal)
        lo, hi = result.success_ci95
        figures = {"success_rate": result.success_rate, "success_ci95": [lo, hi], "successes": result.successes,
                   "mean_cycle_time_s": result.mean_cycle_time_s, "collisions_per_episode": result.collisions_per_episode}
    else:
        from genba.twin.config import Faults, TwinConfig
        from genba.twin.run import run_twin

        report = run_twin(TwinConfig(
            target.scenario, endpoint, episodes=target.episodes, seed=target.seed, speed=0.0, robot=target.robot,
            obs_mode=target.obs_mode, faults=Faults(**row.faults), randomization=row.overlay(), play=row.nominal,
            observe_command=target.observe_command,
        ), log=lambda *_: None)
        figures = {"success_rate": report.success_rate, "success_ci95": list(report.success_ci95),
                   "successes": report.successes, "mean_cycle_time_s": report.mean_cycle_time_s,
                   "safety_interventions": report.safety_interventions, "steps_changed_by_safety": report.steps_changed_by_safety,
                   "watchdog_holds": report.holds, "deadline_misses": report.deadline_misses,
                   "dropped_replies": report.faults["dropped"], "added_latency_ms": report.faults["added_latency_ms_total"],
                   "control_steps": report.control_steps, "round_trip_us": report.round_trip}
    return {"label": row.label, "factor": row.factor, "magnitude": row.magnitude, "randomization": row.randomization,
            "faults": row.faults, **figures, "wall_s": round(time.monotonic() - started, 1)}


@dataclass
class Report:
    target: Target
    suite: Suite
    through_bridge: bool
    rows: list[dict[str, Any]]  # in the suite's order; evaluated ones only until complete
    complete: bool = False
    wall_s: float = 0.0

    def nominal(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["factor"] == "nominal"), None)

    def loss_points(self, row: dict[str, Any]) -> float | None:
        """Success points lost against nominal (positive: worse)."""
        nominal = self.nominal()
        return None if nominal is None else round(100 * (nominal["success_rate"] - row["success_rate"]), 1)

    def worst_single(self, magnitude: float = 1.0) -> dict[str, Any] | None:
        singles = [r for r in self.rows if r["magnitude"] == magnitude and r["factor"] in self.suite.factors]
        return max(singles, key=lambda r: self.loss_points(r) or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_single()
        combined = next((r for r in self.rows if r["factor"] == "all factors"), None)
        return {
            **asdict(self.target), "suite": self.suite.name, "through_bridge": self.through_bridge,
            "complete": self.complete, "wall_s": round(self.wall_s, 1),
            "rows": [{**r, "loss_points": self.loss_points(r)} for r in self.rows],
            "worst_single_factor_x1": None if worst is None else {"factor": worst["factor"], "loss_points": self.loss_points(worst)},
            "all_factors_loss_points": None if combined is None else self.loss_points(combined),
        }



def row_line(report: Report, row: dict[str, Any]) -> str:
    lo, hi = row["success_ci95"]
    ct = "n/a" if row["mean_cycle_time_s"] is None else f"{row['mean_cycle_time_s']:.2f} s"
    loss = report.loss_points(row)
    delta = "" if loss is None or row["factor"] == "nominal" else f" ({-loss:+.1f} pts)"
    bridge = ""
    if "watchdog_holds" in row:
        changed = sum(row["safety_interventions"].values())
        bridge = (f" | safety {changed} interventions, {row['steps_changed_by_safety']} steps changed, holds "
                  f"{row['watchdog_holds']}, dropped {row['dropped_replies']}")
    return (f"{row['label']:<28} success {row['success_rate']:6.1%} [{lo:.1%}, {hi:.1%}]{delta} | cycle {ct}{bridge}"
            f" | {row['wall_s']:.0f} s")


def run_suite(target: Target, suite: Suite, through_bridge: bool = False, workers: int = 1,
              json_path: Path | None = None, log: Callable[[str], None] = print) -> Report:
    """Every row, `workers` at a time; the JSON is rewritten after each row, so an interrupted run keeps its rows."""
    rows = suite.rows(through_bridge)
    report = Report(target, suite, through_bridge, [])
    results: dict[int, dict[str, Any]] = {}
    started = time.monotonic()
    log(f"robustness of {target.bundle} on {target.scenario} ({target.obs_mode}), suite {suite.name}: {len(rows)} rows x "
        f"{target.episodes} episodes{' through the bridge' if through_bridge else ''}, {workers} worker(s)")
    with ExitStack() as stack:
        endpoint = None
        if through_bridge:
            server = stack.enter_context(ServerProcess([target.bundle], "--telemetry", "off", "--device", "cpu",
                                                       "--log-level", "WARNING", die_with_this_process=True))
            endpoint = server.endpoint
        # spawn: each worker starts clean (no PyBullet client or onnxruntime session copied by a fork). A failed or
        # interrupted run stops its workers at once; the JSON keeps the rows already done.
        pool = stack.enter_context(worker_pool(max(1, workers), "spawn"))
        pending = {pool.submit(evaluate_row, target, row, endpoint): i for i, row in enumerate(rows)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                results[i] = future.result()  # a failed row stops the run: its error is the user's to see
                report.rows = [results[j] for j in sorted(results)]
                report.wall_s = time.monotonic() - started
                write_json(json_path, report.to_dict())
                log(f"[{len(results):>3}/{len(rows)}] {row_line(report, results[i])}")
    report.complete = True
    report.wall_s = time.monotonic() - started
    write_json(json_path, report.to_dict())
    return report


def summary_lines(report: Report) -> list[str]:
    lines = [row_line(report, row) for row in report.rows]
    worst = report.worst_single()
    if worst is not None:
        lines.append(f"largest single-factor loss at x1: {report.loss_points(worst):.1f} points ({worst['factor']})")
    combined = next((r for r in report.rows if r["factor"] == "all factors"), None)
    if combined is not None:
        lines.append(f"all factors together at x1: {report.loss_points(combined):.1f} points")
    return lines
