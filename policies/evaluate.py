"""Evaluate a policy (run directory, snapshot or bundle) on fixed-seed episodes.

Reports the success rate with a 95% Wilson interval, mean return, mean cycle time of successful
episodes, collisions per episode and the task's own KPIs (Task.episode_kpis, e.g. bin-sort's sort
accuracy and parts per minute); optionally writes a video of the first episodes.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from bridge.spec import SpecError, spec_hash
from policies.envs import control_hz, make_env
from policies.errors import PolicyError
from policies.policy import Policy, load_policy
from sim.video import VideoRecorder

# Evaluation episodes use seeds far from the training envs' (seed + rank) so they are unseen starts.
EVAL_SEED_OFFSET = 1_000_000
# How a failed episode can end (EvalResult.failures): out of time (truncated), or ended by the task unsuccessful.
FAILURE_ENDINGS = ("time_limit", "task_end")


class EvalError(PolicyError):
    """An evaluation that cannot run (bad target, incompatible policy and env, no renderer)."""


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sound at 0% and 100%, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval holds p; clamped so float rounding cannot put it outside (1 - 1e-16 at 100%).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


# Two-sided 97.5% Student t quantiles for 1..30 degrees of freedom (a seed sweep has few seeds); above, the normal one.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """95% interval of a mean: Student t up to 31 values (seeds), normal above (episodes); None below 2 values."""
    if len(values) < 2:
        return None
    df = len(values) - 1
    q = T975[df - 1] if df <= len(T975) else 1.959964
    mean, half = statistics.fmean(values), q * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


@dataclass
class EvalResult:
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_return: float
    mean_cycle_time_s: float | None
    collisions_per_episode: float | None
    mean_episode_steps: float
    env_steps: int
    # The task's own KPIs: each a mean over the episodes whose final info defines it.
    task_kpis: dict[str, float] = field(default_factory=dict)
    # 95% interval of the mean cycle time (mean_interval); None below 2 successful episodes.
    cycle_time_ci95_s: tuple[float, float] | None = None
    # How the failed episodes ended: "time_limit", the time ran out (truncated); "task_end", the task ended
    # the episode without success (a part dropped or in the wrong bin, a force limit, ...).
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_ENDINGS, 0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        d["cycle_time_ci95_s"] = list(self.cycle_time_ci95_s) if self.cycle_time_ci95_s else None
        return d

    def line(self) -> str:
        lo, hi = self.success_ci95
        ct = "n/a" if self.mean_cycle_time_s is None else f"{self.mean_cycle_time_s:.2f} s"
        col = "n/a" if self.collisions_per_episode is None else f"{self.collisions_per_episode:.2f}"
        kpis = "".join(f" | {name.replace('_', ' ')} {value:.3g}" for name, value in self.task_kpis.items())
        failed = self.episodes - self.successes
        why = f" ({self.failures['time_limit']} out of time, {self.failures['task_end']} ended by the task)" if failed else ""
        return (f"success {self.success_rate:.1%} [{lo:.1%}, {hi:.1%}] over {self.episodes} episodes{why} | "
                f"return {self.mean_return:.2f} | cycle time {ct} | collisions/episode {col}{kpis}")


def run_episodes(env, policy: Policy, n: int, seed: int, control_hz: float,
                 frame_sink: Callable[[np.ndarray], None] | None = None, video_episodes: int = 0,
                 on_episode: Callable[[], None] | None = None) -> EvalResult:
    """Run `n` episodes with seeds seed, seed+1, ...; the policy is reset at each start and acts each step.
    `on_episode` is called as each episode ends (a progress bar)."""
    returns, cycle_times, collisions, lengths, successes = [], [], [], [], 0
    failures = dict.fromkeys(FAILURE_ENDINGS, 0)
    collisions_reported = True
    kpi_names = getattr(getattr(env.unwrapped, "task", None), "episode_kpis", ())
    kpi_values: dict[str, list[float]] = {name: [] for name in kpi_names}
    for i in range(n):
        obs, info = env.reset(seed=seed + i)
        policy.reset()
        record = frame_sink is not None and i < video_episodes
        if record:
            frame_sink(env.render())
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if record:
                frame_sink(env.render())
        success = bool(info.get("is_success", False))
        successes += success
        if not success:
            failures["time_limit" if truncated and not terminated else "task_end"] += 1
        returns.append(total)
        lengths.append(steps)
        if success:
            # Envs that report no cycle time: the episode ends on success, so its duration is the cycle.
            ct = info.get("cycle_time", steps / control_hz)
            if ct is not None and math.isfinite(ct):
                cycle_times.append(float(ct))
        if "collisions" in info:
            collisions.append(float(info["collisions"]))
        else:
            collisions_reported = False
        for name in kpi_names:
            if name in info:
                kpi_values[name].append(float(info[name]))
        if on_episode is not None:
            on_episode()
    return EvalResult(
        episodes=n, successes=successes, success_rate=successes / n if n else 0.0,
        success_ci95=wilson_interval(successes, n), mean_return=float(np.mean(returns)) if returns else 0.0,
        mean_cycle_time_s=float(np.mean(cycle_times)) if cycle_times else None,
        collisions_per_episode=float(np.mean(collisions)) if collisions_reported and collisions else None,
        mean_episode_steps=float(np.mean(lengths)) if lengths else 0.0, env_steps=int(sum(lengths)),
        task_kpis={name: float(np.mean(values)) for name, values in kpi_values.items() if values},
        cycle_time_ci95_s=mean_interval(cycle_times), failures=failures,
    )


def _check_spec(loaded, env, target, scenario: str, robot: str | None) -> None:
    """A bundle acts only on the observation and action it was exported for: on another cell's (--scenario, --robot) it
    failed inside the graph, or, with the same sizes, ran on features that mean something else."""
    spec_of = getattr(env.unwrapped, "feature_spec", None)
    if loaded.spec_hash is None or spec_of is None:
        return
    spec = spec_of()
    try:
        ours = spec_hash(spec["observation"], spec["action"], spec.get("control_hz"))
    except SpecError:  # a toy env's spec per Dict key: only the exporter flattens it
        return
    if ours != loaded.spec_hash:
        on = f"{scenario} with --robot {robot}" if robot else scenario
        raise EvalError(f"{target} acts on the observation and action of {loaded.scenario} (spec {loaded.spec_hash[:12]}); "
                        f"{on} has others (spec {ours[:12]}), so the bundle cannot drive it")


def evaluate(target: str | Path, n: int = 100, seed: int = 0, scenario: str | None = None, robot: str | None = None,
             video: str | Path | None = None, video_episodes: int = 3, which: str = "best", device: str = "cpu",
             executor: str = "onnxruntime", obs_mode: str = "state", randomization: str | Path | dict | None = None,
             play: bool = False, progress: bool = False) -> tuple[EvalResult, dict]:
    """Evaluate a run/bundle on its scenario (or `scenario`), optionally recording a video.

    obs_mode "perceived": the policy sees the cell through its camera and perception (same layout as state);
    "pixels": camera images and the robot's readings, for a pixel policy (and only for one).
    randomization: a profile name, YAML path or dict merged over the scenario's randomization section;
    play: every dynamics / sensing / visuals factor off (the same seeds start the same episodes).
    """
    loaded = load_policy(target, which, device, executor)
    if (loaded.obs_mode == "pixels") != (obs_mode == "pixels"):
        raise EvalError(f"{target}: a policy on camera images needs --obs pixels" if loaded.obs_mode == "pixels" else
                        f"{target}: a policy on state features cannot act on camera images; use --obs state or --obs perceived")
    scenario = scenario or loaded.own_scenario()
    env = make_env(scenario, robot or loaded.robot, render_mode="rgb_array" if video else None, obs_mode=obs_mode,
                   randomization=randomization, play=play, observe_command=loaded.observe_command)
    recorder = None
    try:
        _check_spec(loaded, env, target, scenario, robot)
        hz = control_hz(env)
        if video:
            recorder = VideoRecorder(video, fps=hz)
        sink = None if recorder is None else recorder.add
        with tqdm(total=n, unit="ep", desc="episodes", leave=False, disable=not progress) as bar:  # 200 pixel episodes: minutes
            result = run_episodes(env, loaded.policy, n, EVAL_SEED_OFFSET + seed, hz, frame_sink=sink,
                                  video_episodes=video_episodes, on_episode=lambda: bar.update(1))
    finally:
        if recorder is not None:
            recorder.close()
        env.close()
    shown = randomization if isinstance(randomization, (str, Path, type(None))) else "overlay"
    return result, {**loaded.describe(), "scenario": scenario, "obs_mode": obs_mode,
                    "randomization": None if shown is None else str(shown), "play": play}

