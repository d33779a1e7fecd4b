"""Build the envs training, evaluation and demo recording run on: genba scenarios or the toy envs.

A scenario is a built-in name (`reach`), a YAML path, or a toy env name (`toy-target`, `toy-reach`)
that needs no physics (tests, smoke runs).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from pydantic import ValidationError

import sim
from policies.errors import PolicyError
from policies.toy_envs import TOY_ENVS, PointReachEnv, PointReachExpert, TargetEnv
from scenarios import ScenarioError, load_scenario, scenario_hash
from scenarios.randomization import Overlay
from sim.experts import make_expert as sim_expert
from sim.randomization import RandomizationError


class EnvError(PolicyError):
    """A scenario or robot that cannot be built into an env."""


def make_env(scenario: str, robot: str | None = None, render_mode: str | None = None, obs_mode: str = "state",
             randomization: Overlay | None = None, play: bool = False, observe_command: bool = False) -> gym.Env:
    """One env with a TimeLimit-free FactoryEnv (the scenario's own episode limit) or a toy env.

    obs_mode: state | perceived | pixels (sim.env.FactoryEnv); a state policy runs on perceived observations.
    randomization: a profile name, YAML path or dict merged over the scenario's randomization section;
    play: every dynamics / sensing / visuals factor off (sim.env.FactoryEnv);
    observe_command: the commanded tool target minus the tool at the observation's end (sim.env.FactoryEnv).
    """
    if scenario in TOY_ENVS:
        if robot is not None:
            raise EnvError(f"toy env {scenario!r} has no robot; drop --robot")
        if obs_mode != "state":
            raise EnvError(f"toy env {scenario!r} has no cameras; drop --obs {obs_mode}")
        if randomization is not None:
            raise EnvError(f"toy env {scenario!r} has nothing to randomise; drop --randomization")
        if observe_command:
            raise EnvError(f"toy env {scenario!r} has no tool target to observe; drop observe_command")
        return TOY_ENVS[scenario]()
    try:
        return sim.make_env(scenario, robot=robot, render_mode=render_mode, obs_mode=obs_mode, randomization=randomization, play=play,
                            observe_command=observe_command)
    except (ScenarioError, RandomizationError) as exc:  # a bad randomisation overlay, profile or noise feature
        raise EnvError(str(exc)) from None
    except ValueError as exc:  # pydantic / sim validation of a robot override
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()) \
            if isinstance(exc, ValidationError) else exc  # one line, not pydantic's dump with its web address
        raise EnvError(f"cannot build scenario {scenario!r} with robot {robot!r}: {detail}") from None


def env_factory(scenario: str, robot: str | None, seed: int, rank: int, info_keywords=("is_success",),
                obs_mode: str = "state", randomization: Overlay | None = None, play: bool = False,
                wrap: Callable[[gym.Env], gym.Env] | None = None, observe_command: bool = False) -> Callable[[], gym.Env]:
    """A picklable thunk for (Subproc|Dummy)VecEnv: env `rank` seeded `seed + rank`, with a Monitor.

    wrap: a picklable wrapper applied inside the Monitor (policies.residual.Residual).
    """

    def _init() -> gym.Env:
        from stable_baselines3.common.monitor import Monitor  # SB3 (1 s to import) only where training builds envs

        env = make_env(scenario, robot, obs_mode=obs_mode, randomization=randomization, play=play, observe_command=observe_command)
        env = Monitor(wrap(env) if wrap is not None else env, info_keywords=info_keywords)
        env.reset(seed=seed + rank)
        env.action_space.seed(seed + rank)
        return env

    return _init


def make_vec_env(scenario: str, robot: str | None, n_envs: int, seed: int, subprocess: bool | None = None,
                 obs_mode: str = "state", randomization: Overlay | None = None, play: bool = False,
                 wrap: Callable[[gym.Env], gym.Env] | None = None, observe_command: bool = False):
    """K envs; more than one runs each in its own process (SubprocVecEnv), so physics steps in parallel."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv  # SB3 only where training builds envs

    fns = [env_factory(scenario, robot, seed, rank, obs_mode=obs_mode, randomization=randomization, play=play, wrap=wrap,
                       observe_command=observe_command) for rank in range(n_envs)]
    use_subproc = n_envs > 1 if subprocess is None else subprocess
    if use_subproc:
        # forkserver: children do not inherit torch threads or a Bullet client from the parent.
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)


def feature_spec(env: gym.Env) -> dict[str, Any] | None:
    base = env.unwrapped
    return base.feature_spec() if hasattr(base, "feature_spec") else None


def scenario_info(scenario: str, env: gym.Env | None = None) -> dict[str, Any]:
    """{"name", "sha256"} of the scenario (toy envs have no scenario file: sha256 is None)."""
    if scenario in TOY_ENVS:
        return {"name": scenario, "sha256": None}
    spec = env.unwrapped.scenario if env is not None and hasattr(env.unwrapped, "scenario") else load_scenario(scenario)
    return {"name": spec.name, "sha256": scenario_hash(spec)}


def control_hz(env: gym.Env) -> float:
    spec = feature_spec(env) or {}
    return float(spec.get("control_hz") or env.metadata.get("render_fps") or 1.0)


class _EchoExpert:
    """TargetEnv's expert: the observation is the answer."""

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).copy()


def make_expert(env: gym.Env):
    """The scripted expert for this env: `reset()` then `act(obs) -> action` each step."""
    base = env.unwrapped
    if isinstance(base, TargetEnv):
        return _EchoExpert()
    if isinstance(base, PointReachEnv):
        return PointReachExpert(base)
    return sim_expert(env)
