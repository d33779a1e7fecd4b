"""PyBullet factory cells as Gymnasium environments.

Importing this package registers one env id per built-in scenario and robot, in one loop:
`genba/Reach-v0`, `genba/ConveyorPick-v0` (the scenario's own robot) and `genba/ReachGP7-v0`, ...
(the same cell with another robot).
"""

from __future__ import annotations

import gymnasium as gym

from scenarios import builtin_names, load_scenario
from scenarios.naming import ROBOT_MODELS, env_id
from scenarios.schema import SUCTION_MODELS


def _register_all() -> list[str]:
    ids = []
    for name in builtin_names():
        scenario = load_scenario(name)
        # Another built-in arm stands in where it can carry the scenario's tool (a suction cell: SUCTION_MODELS).
        robots = [None] + [r for r in ROBOT_MODELS if r != scenario.robot.model
                           and (scenario.robot.suction is None or r in SUCTION_MODELS)]
        for robot in robots:
            id_ = env_id(scenario.name, scenario.version, robot)
            if id_ not in gym.registry:
                gym.register(id=id_, entry_point="sim.env:make_factory_env", kwargs={"scenario": name, "robot": robot})
            ids.append(id_)
    return ids


ENV_IDS: list[str] = _register_all()


def make_env(scenario: str = "conveyor-pick", robot: str | None = None, **kwargs):
    """A FactoryEnv from a built-in scenario name or a YAML path (no registration needed).

    Keywords go to FactoryEnv: e.g. randomization (a profile name, YAML path or dict merged over the
    scenario's randomization section) and play (every dynamics / sensing / visuals factor off).
    """
    from sim.env import make_factory_env  # lazy: PyBullet loads with the first env, not with the registry or sim.errors

    return make_factory_env(scenario, robot=robot, **kwargs)


__all__ = ["ENV_IDS", "env_id", "make_env"]
