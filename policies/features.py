"""How a bundle lays out observations and what its actions mean (numpy only).

A bundle takes one flat float32 vector: a Dict observation is flattened in DICT_OBS_ORDER. Its
manifest states each action kind's meaning and every bound as JSON. (The spec hash over these
features, which controllers compute too, is bridge.spec.)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

# Goal-conditioned (HER) envs return a Dict observation; bundles take one flat vector in this order.
DICT_OBS_ORDER = ("observation", "achieved_goal", "desired_goal")

ACTION_MEANINGS = {
    "ee_delta": (
        "Cartesian tool-frame delta, normalized to [-1, 1] per component: (dx, dy, dz[, dyaw], grip). "
        "A value of 1 moves the tool at robot.max_ee_speed (m/s) for one control period (1/control_hz s); "
        "grip > 0 closes the gripper, <= 0 opens it."
    ),
    "joint_delta": (
        "Joint-space delta, normalized to [-1, 1] per joint (then grip): 1 moves the joint at its rated "
        "velocity times the scenario's speed fraction for one control period (1/control_hz s); "
        "grip > 0 closes the gripper, <= 0 opens it."
    ),
    "absolute": "Absolute command in the units given by action.features, within action.low/high.",
}


def flatten_obs(obs: Any, order: tuple[str, ...] = DICT_OBS_ORDER) -> np.ndarray:
    """A Dict observation as one float32 vector in `order` (batched dicts give (B, dim))."""
    if not isinstance(obs, Mapping):
        return np.asarray(obs, dtype=np.float32)
    parts = [np.asarray(obs[k], dtype=np.float32) for k in order]
    batched = parts[0].ndim > 1
    parts = [p.reshape(p.shape[0], -1) if batched else p.reshape(-1) for p in parts]
    return np.concatenate(parts, axis=-1)


def json_bound(values: Any, size: int) -> list[float | None]:
    """Bounds as a JSON list of `size` floats; an infinite bound becomes null (JSON has no inf)."""
    arr = np.broadcast_to(np.asarray(values, dtype=np.float64), (size,))
    return [None if not math.isfinite(v) else float(v) for v in arr]
