"""The robustness report as a PNG: success per row with its 95% interval, the nominal rate as a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"nominal": "#555555", 1.0: "#3b7dd8", 2.0: "#e08a1e", "combined": "#c0392b"}
COMBINED = ("all factors", "bridge faults", "all + bridge")


def _colour(row: dict[str, Any]) -> str:
    if row["factor"] == "nominal":
        return COLOURS["nominal"]
    if row["factor"] in COMBINED:
        return COLOURS["combined"]
    return COLOURS.get(row["magnitude"], "#7f8c8d")


def plot_report(report: dict[str, Any], path: Path, title: str | None = None, baseline: dict[str, Any] | None = None) -> Path:
    """Write `report` (Report.to_dict()) as a horizontal bar chart; returns the path. With `baseline` (another
    report, e.g. the same cell's policy trained without randomisation), its rows of the same label are drawn
    as thin grey bars under each row's, so the difference shows."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rows = report["rows"]
    labels = [r["label"] for r in rows]
    success = [100 * r["success_rate"] for r in rows]
    lo = [100 * (r["success_rate"] - r["success_ci95"][0]) for r in rows]
    hi = [100 * (r["success_ci95"][1] - r["success_rate"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.32 * len(rows)), dpi=100)
    y = list(range(len(rows)))[::-1]  # first row on top
    height = 0.8
    if baseline is not None:
        height = 0.55
        theirs = {r["label"]: r for r in baseline["rows"]}
        pairs = [(yi, theirs[r["label"]]) for yi, r in zip(y, rows) if r["label"] in theirs]
        ax.barh([yi - 0.36 for yi, _ in pairs], [100 * b["success_rate"] for _, b in pairs], height=0.2, color="#b0b0b0",
                label=f"baseline: {Path(baseline['bundle']).name}")
        ax.legend(loc="lower right", fontsize=7)
    ax.barh(y, success, height=height, xerr=[lo, hi], color=[_colour(r) for r in rows],
            error_kw={"ecolor": "black", "capsize": 2, "lw": 0.8})
    for yi, value, err in zip(y, success, hi):
        ax.text(min(value + err + 1.0, 101.0), yi, f"{value:.0f}%", va="center", fontsize=7)
    nominal = next((r for r in rows if r["factor"] == "nominal"), None)
    if nominal is not None:
        ax.axvline(100 * nominal["success_rate"], color=COLOURS["nominal"], ls="--", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 108)
    ax.set_xlabel("success (%), 95% interval")
    where = " through the bridge" if report.get("through_bridge") else ""
    ax.set_title(title or f"{Path(report['bundle']).name} on {report['scenario']} ({report['obs_mode']}): "
                          f"suite {report['suite']}{where}, {report['episodes']} episodes per row", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
