"""What a twin run reports: success and cycle time as `genba eval` does, plus the bridge's own figures."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TwinReport:
    scenario: str
    bundle: str
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_cycle_time_s: float | None
    control_steps: int
    round_trip: dict[str, Any]
    deadline_misses: int
    step_status: dict[str, int]
    safety_interventions: dict[str, int]  # per servo sample, by kind
    steps_changed_by_safety: int  # control periods whose command the safety layer (or a hold) altered
    steps_without_action: int  # of those, periods with no action from the policy (lost, late, a dry chunk queue): held
    holds: int
    faults: dict[str, Any]
    overruns: int  # control periods that started late
    wall_s: float
    servo_hz: float  # effective: a whole number of servo cycles per control period
    speed: float
    episode_success: list[bool]
    episode_steps: list[int]
    episode_returns: list[float]  # summed rewards, as `genba eval` sums them (mean_return there)
    chunks: dict[str, Any] | None = None  # the chunk executor's figures (bridge.chunks.ChunkQueue.summary), if it ran
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM: the figures are the finished episodes'

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        return d

    def lines(self) -> list[str]:
        lo, hi = self.success_ci95
        rt = {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")) for k, v in self.round_trip.items()}
        ms = lambda key: "n/a" if math.isnan(rt[key]) else f"{rt[key] / 1e3:.2f} ms"  # noqa: E731
        ct = "n/a" if self.mean_cycle_time_s is None else f"{self.mean_cycle_time_s:.2f} s"
        changed = {k: v for k, v in self.safety_interventions.items() if v}
        return [
            f"twin {self.scenario} via bundle {self.bundle!r}: success {self.success_rate:.1%} [{lo:.1%}, {hi:.1%}] "
            f"over {self.episodes} episodes{' (interrupted)' if self.interrupted else ''}, cycle time {ct}",
            f"round trip p50 {ms('p50_us')}, p99 {ms('p99_us')}, max {ms('max_us')}; "
            f"deadline misses {self.deadline_misses} of {self.control_steps} steps; statuses {self.step_status}",
            f"safety interventions {changed or 'none'}; {self.steps_changed_by_safety} of {self.control_steps} steps changed "
            f"by them or held ({self.steps_without_action} with no action from the policy); watchdog holds {self.holds}; "
            f"late control periods {self.overruns}",
            f"faults {self.faults}",
            *([] if self.chunks is None else [
                f"chunks: {self.chunks['served_fraction']:.1%} of control periods served from the queue, "
                f"{self.chunks['hold_fraction']:.1%} dry (hold); {self.chunks['requests']} requests, {self.chunks['lost']} lost, "
                f"{self.chunks['stale_chunks']} stale chunks refused; boundary jump {_number(self.chunks['boundary_jump_mean'])} "
                f"vs step {_number(self.chunks['step_jump_mean'])}"]),
        ]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
