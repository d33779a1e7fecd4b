"""Shared by the cell tests: one episode's final info, a feature's slice of a flat observation, a shipped
scenario with nested keys replaced."""

from __future__ import annotations

from typing import Any

import numpy as np

from scenarios import load_scenario


def final_info(env, expert, seed: int) -> dict:
    """Run one episode (reset with `seed`) with `expert` acting; the last step's info."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    return info


def feature_slice(env, obs: np.ndarray, name: str) -> np.ndarray:
    """The slice of a flat observation that holds feature `name` (feature_spec order)."""
    start = 0
    for f in env.feature_spec()["observation"]["features"]:
        if f["name"] == name:
            return obs[start:start + f["size"]]
        start += f["size"]
    raise KeyError(name)


def scenario_data(name: str, changes: dict[str, Any], sep: str = ".") -> dict:
    """The shipped scenario `name` as a dict, each key path (parts joined by `sep`) replaced by its value."""
    data = load_scenario(name).model_dump()
    for path, value in changes.items():
        *parents, leaf = path.split(sep)
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data
