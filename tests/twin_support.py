"""Shared by the twin tests: a quickly cloned Reach bundle and a bridge server in its own process."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from genba.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def clone_bundle(scenario: str, root: Path, demo_episodes: int, iterations: int, eval_episodes: int, **bc) -> Path:
    """Behaviour cloning of a cell's expert (its preset, no extra rounds, `bc` overrides), exported as a bundle under `root`."""
    from policies.config import resolve_config
    from policies.run_export import export_run
    from policies.train import train

    cfg = resolve_config(scenario, "bc", {"seed": 0, "eval_episodes": eval_episodes,
                                          "bc": {"demo_episodes": demo_episodes, "iterations": iterations, "rounds": 0, **bc}})
    train(cfg, root / "run", progress=False)
    return export_run(root / "run", root / f"{scenario}-bc")


def clone_reach_bundle(root: Path, demo_episodes: int, iterations: int, eval_episodes: int) -> Path:
    return clone_bundle("reach", root, demo_episodes, iterations, eval_episodes)


def untrained_reach_bundle(root: Path) -> Path:
    """An untrained SAC policy for Reach as a bundle: it all but never reaches a goal, so its
    episodes run to the step limit (for tests that need an episode to last)."""
    from stable_baselines3 import SAC

    from policies.envs import feature_spec, make_env, scenario_info
    from policies.export import export_bundle

    env = make_env("reach")
    model = SAC("MultiInputPolicy", env, policy_kwargs={"net_arch": [16]}, buffer_size=10, seed=0, device="cpu")
    bundle = export_bundle(model, root / "reach-untrained", feature_spec=feature_spec(env), scenario=scenario_info("reach", env))
    env.close()
    return bundle


@contextlib.contextmanager
def bridge_server(bundle: Path) -> Iterator[str]:
    """`genba bridge serve BUNDLE` on a free loopback port; yields its endpoint, always stops it."""
    with ServerProcess([bundle], "--telemetry", "off", "--device", "cpu", "--log-level", "WARNING") as server:
        yield server.endpoint
