"""The one shape of a policy: `reset()` when an episode starts, then `act(obs) -> action` each step.

Scripted experts (sim.experts), SB3 models (`SB3Policy`) and bundles (policies.bundle.Bundle) all
have it, so evaluation, demonstration recording, the viewer and the bridge drive any of them alike.
A bundle also takes a batch of observations in `act`, which is what the bridge server uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from policies.bundle import load_bundle
from policies.bundle_format import is_bundle
from policies.errors import PolicyError
from policies.rundir import RunDir
from policies.snapshot import open_snapshot, run_snapshot


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Forget anything remembered from the last episode (feed-forward policies: nothing)."""

    def act(self, obs: Any) -> np.ndarray:
        """The action for one observation, in the env's action space."""


class PolicyLoadError(PolicyError):
    """A path that holds no run directory, snapshot or bundle."""


class SB3Policy:
    """An SB3 model's deterministic action for a raw observation, normalised as in training."""

    def __init__(self, model, vecnormalize=None) -> None:
        self.model = model
        self.vecnormalize = vecnormalize if vecnormalize is not None and vecnormalize.norm_obs else None

    def reset(self) -> None:
        """SB3's MLP policies are feed-forward: nothing to clear."""

    def act(self, obs: Any) -> np.ndarray:
        x = self.vecnormalize.normalize_obs(obs) if self.vecnormalize is not None else obs
        action, _ = self.model.predict(x, deterministic=True)
        return action


class LoadedPolicy(NamedTuple):
    policy: Policy
    kind: str  # "bundle" | "run"
    path: str
    scenario: str | None  # the scenario it was trained on, if it says
    robot: str | None
    details: dict[str, Any]  # bundle name, or training steps

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "scenario": self.scenario, "robot": self.robot, **self.details}


def load_policy(target: str | Path, which: str = "best", device: str = "cpu", executor: str = "onnxruntime") -> LoadedPolicy:
    """The policy in a bundle, a run directory (its `which` snapshot: best | final | latest) or a snapshot."""
    path = Path(target)
    if is_bundle(path):
        bundle = load_bundle(path, device=device, executor=executor)
        scenario = bundle.manifest.get("scenario", {}).get("name")
        robot = (bundle.manifest.get("training") or {}).get("robot")
        return LoadedPolicy(bundle, "bundle", str(path), scenario, robot, {"name": bundle.name})
    if (path / "config.yaml").is_file():
        snap = run_snapshot(path, which)
        cfg = RunDir.open(path).config()
        scenario, robot = cfg.scenario, cfg.robot
    elif (path / "state.json").is_file():
        snap = open_snapshot(path)
        scenario, robot = snap.state.get("scenario"), snap.state.get("robot")
    else:
        raise PolicyLoadError(f"{path}: not a run directory, snapshot or bundle")
    policy = SB3Policy(snap.load_model(device=device), snap.load_vecnormalize())
    return LoadedPolicy(policy, "run", str(snap.path), scenario, robot, {"steps": snap.state.get("num_timesteps")})
