"""Evaluate a policy (run directory, snapshot or bundle) on fixed-seed episodes.

Reports the success rate with a 95% Wilson interval, mean return, mean cycle time of successful
episodes and collisions per episode; optionally writes a video of the first episodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from genba.errors import GenbaError

# Evaluation episodes use seeds far from the training envs' (seed + rank) so they are unseen starts.
EVAL_SEED_OFFSET = 1_000_000

ActFn = Callable[[Any], np.ndarray]


class EvalError(GenbaError):
    """An evaluation that cannot run (bad target, incompatible policy and env, no renderer)."""


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sound at 0% and 100%, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        return d

    def line(self) -> str:
        lo, hi = self.success_ci95
        ct = "n/a" if self.mean_cycle_time_s is None else f"{self.mean_cycle_time_s:.2f} s"
        col = "n/a" if self.collisions_per_episode is None else f"{self.collisions_per_episode:.2f}"
        return (f"success {self.success_rate:.1%} [{lo:.1%}, {hi:.1%}] over {self.episodes} episodes | "
                f"return {self.mean_return:.2f} | cycle time {ct} | collisions/episode {col}")


def run_episodes(env, act: ActFn, n: int, seed: int, control_hz: float, reset_policy: Callable[[], None] | None = None,
                 frame_sink: Callable[[np.ndarray], None] | None = None, video_episodes: int = 0) -> EvalResult:
    """Run `n` episodes with seeds seed, seed+1, ...; `act(obs)` gives the action (deterministic policy)."""
    returns, cycle_times, collisions, lengths, successes = [], [], [], [], 0
    collisions_reported = True
    for i in range(n):
        obs, info = env.reset(seed=seed + i)
        if reset_policy is not None:
            reset_policy()
        record = frame_sink is not None and i < video_episodes
        if record:
            frame_sink(env.render())
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if record:
                frame_sink(env.render())
        success = bool(info.get("is_success", False))
        successes += success
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
    return EvalResult(
        episodes=n, successes=successes, success_rate=successes / n if n else 0.0,
        success_ci95=wilson_interval(successes, n), mean_return=float(np.mean(returns)) if returns else 0.0,
        mean_cycle_time_s=float(np.mean(cycle_times)) if cycle_times else None,
        collisions_per_episode=float(np.mean(collisions)) if collisions_reported and collisions else None,
        mean_episode_steps=float(np.mean(lengths)) if lengths else 0.0, env_steps=int(sum(lengths)),
    )


def model_act_fn(model, vecnormalize=None) -> ActFn:
    """Deterministic SB3 action for a raw observation, normalised like in training."""

    def act(obs):
        x = vecnormalize.normalize_obs(obs) if vecnormalize is not None and vecnormalize.norm_obs else obs
        action, _ = model.predict(x, deterministic=True)
        return action

    return act


def load_policy(target: str | Path, which: str = "best", device: str = "cpu") -> tuple[ActFn, dict[str, Any]]:
    """An act function and a description {kind, scenario, robot, ...} for a run directory, snapshot or bundle."""
    path = Path(target)
    if (path / "manifest.json").is_file():
        from policies.bundle import load_bundle

        bundle = load_bundle(path, device=device)
        scenario = bundle.manifest.get("scenario", {}).get("name")
        robot = (bundle.manifest.get("training") or {}).get("robot")
        return bundle.infer, {"kind": "bundle", "path": str(path), "scenario": scenario, "robot": robot, "name": bundle.name}
    from policies.rundir import RunDir
    from policies.snapshot import open_snapshot, run_snapshot

    if (path / "config.yaml").is_file():
        snap = run_snapshot(path, which)
        cfg = RunDir.open(path).config()
        scenario, robot = cfg.scenario, cfg.robot
    elif (path / "state.json").is_file():
        snap = open_snapshot(path)
        scenario, robot = snap.state.get("scenario"), snap.state.get("robot")
    else:
        raise EvalError(f"{path}: not a run directory, snapshot or bundle")
    model = snap.load_model(device=device)
    return model_act_fn(model, snap.load_vecnormalize()), {"kind": "run", "path": str(snap.path), "scenario": scenario,
                                                          "robot": robot, "steps": snap.state.get("num_timesteps")}


def evaluate(target: str | Path, n: int = 100, seed: int = 0, scenario: str | None = None, robot: str | None = None,
             video: str | Path | None = None, video_episodes: int = 3, which: str = "best", device: str = "cpu") -> tuple[EvalResult, dict]:
    """Evaluate a run/bundle on its scenario (or `scenario`), optionally recording a video."""
    from policies.envs import control_hz, make_env

    act, desc = load_policy(target, which, device)
    scenario = scenario or desc.get("scenario")
    if not scenario:
        raise EvalError(f"{target}: does not name its scenario; pass --scenario")
    env = make_env(scenario, robot or desc.get("robot"), render_mode="rgb_array" if video else None)
    writer = None
    try:
        sink = None
        if video:
            writer = open_video(Path(video), fps=control_hz(env))
            sink = writer.write
        result = run_episodes(env, act, n, EVAL_SEED_OFFSET + seed, control_hz(env), frame_sink=sink, video_episodes=video_episodes)
    finally:
        if writer is not None:
            writer.close()
        env.close()
    return result, {**desc, "scenario": scenario}


class _CvVideo:
    """mp4 writer on OpenCV; the frame size is fixed by the first frame."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._writer = path, fps, None

    def write(self, frame) -> None:
        import cv2

        if frame is None:
            raise EvalError("the env returned no frame; it cannot render in rgb_array mode")
        frame = np.asarray(frame)[..., :3].astype(np.uint8)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise EvalError(f"{self.path}: OpenCV cannot open a video writer here")
        self._writer.write(frame[..., ::-1])  # OpenCV wants BGR

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def open_video(path: Path, fps: float):
    """The shared recorder (sim.viewer.recorder.VideoRecorder) when the viewer package is present, else OpenCV.

    Either way the object has write(rgb_frame) and close().
    """
    try:
        from sim.viewer.recorder import VideoRecorder
    except ImportError:
        return _CvVideo(path, fps)
    return VideoRecorder(path, fps=fps)
