"""`genba robustness BUNDLE`: the bundle at nominal, under each shop-floor perturbation alone (1x, 2x) and under
all of them together; in the simulator, or through the twin and a bridge server with bridge faults as more factors."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from genba.commands.options import OBS_HELP, Observe
from genba.errors import AppError
from genba.jsonfile import check_output_file, json_option


def _check_plot_path(path: Optional[Path]) -> Optional[Path]:
    """Checked before the evaluation, not after it (a .txt name failed with matplotlib's traceback at the end)."""
    if path is not None and path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise typer.BadParameter(f"{path}: give a .png, .svg or .pdf name")
    return check_output_file(path)


def robustness_cmd(
    bundle: Path = typer.Argument(..., help="policy bundle directory"),
    suite: str = typer.Option("shop-floor", help="shipped suite name (genba/robustness/suites/) or a suite YAML"),
    magnitudes: Optional[str] = typer.Option(None, help="comma-separated multiples of the default magnitudes each factor "
                                             "runs at alone, e.g. 1,2,4 (default: the suite's)"),
    episodes: int = typer.Option(200, help="evaluation episodes per row (the same seeds in every row)"),
    seed: int = typer.Option(0, min=0, help="evaluation seed, as `genba eval --seed`"),
    through_bridge: bool = typer.Option(False, "--through-bridge", help="every row through the digital twin and a bridge "
                                        "server on loopback; the suite's bridge faults are further rows"),
    bridge_only: bool = typer.Option(False, "--bridge-only", help="through the bridge, the nominal cell and the suite's "
                                     "bridge faults only (implies --through-bridge)"),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), help="rows evaluated at once, one process each"),
    scenario: Optional[str] = typer.Option(None, help="scenario (default: the bundle's own)"),
    robot: Optional[str] = typer.Option(None, help="robot model (default: the one it was trained with)"),
    obs: Optional[Observe] = typer.Option(None, "--obs", help=OBS_HELP + " (default: what the bundle was trained on)"),
    json_path: Optional[Path] = json_option("write the report as JSON (rewritten after each row)"),
    plot: Optional[Path] = typer.Option(None, help="write the report as a chart: PNG, SVG or PDF by the name's suffix",
                                        callback=_check_plot_path),
    baseline: Optional[Path] = typer.Option(None, help="a report JSON of another bundle (e.g. trained without randomisation) "
                                            "drawn beside each row of the chart"),
) -> None:
    """How a bundle holds up on the shop floor: success (95% interval) and cycle time per perturbation."""
    from genba.robustness.chart import plot_report
    from genba.robustness.run import Target, run_suite, summary_lines
    from genba.robustness.suite import load_suite
    from policies.bundle_format import read_manifest
    from policies.policy import bundle_scenario

    base_report = _read_report(baseline) if baseline is not None else None
    if episodes < 1:
        raise AppError(f"--episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise AppError(f"--workers must be >= 1, got {workers}")
    manifest = read_manifest(bundle)
    training = manifest.get("training") or {}
    cell = scenario or bundle_scenario(bundle, manifest.get("scenario") or {}, training.get("robot"))
    obs_mode = obs.value if obs is not None else training.get("obs_mode") or ("pixels" if manifest["observation"].get("images") else "state")
    chosen = load_suite(suite, cell, _magnitudes(magnitudes))
    if bridge_only:
        chosen, through_bridge = replace(chosen, factors={}), True
    target = Target(str(bundle), cell, robot or training.get("robot"), obs_mode, episodes, seed, bool(training.get("observe_command")))
    report = run_suite(target, chosen, through_bridge, workers, json_path, log=lambda line: typer.echo(line, err=True))
    for line in summary_lines(report):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"chart: {plot_report(report.to_dict(), plot, baseline=base_report)}")


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
        report["rows"], report["bundle"]  # noqa: B018 (the keys a chart needs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AppError(f"--baseline {path}: not a robustness report JSON ({exc})") from None
    return report


def _magnitudes(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise AppError(f"--magnitudes {text!r}: give positive numbers separated by commas, e.g. 1,2")
    return values


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness_cmd)

