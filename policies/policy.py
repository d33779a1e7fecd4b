"""The one shape of a policy: `reset()` when an episode starts, then `act(obs) -> action` each step.

Scripted experts (sim.experts), SB3 models (`SB3Policy`), pixel students (policies.pixel_net.PixelPolicy)
and bundles (policies.bundle.Bundle) all have it, so evaluation, demonstration recording, the viewer and the bridge drive any of them alike.
A bundle also takes a batch of observations in `act`, which is what the bridge server uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from policies.bundle import load_bundle
from policies.bundle_format import is_bundle
from policies.errors import PolicyError
from policies.pixel_net import load_pixel_policy
from policies.residual import Residual
from policies.rundir import RunDir
from policies.sb3_policy import SB3Policy
from policies.snapshot import open_snapshot, run_snapshot
from scenarios import ScenarioError, builtin_names, load_scenario, names_a_file, scenario_hash
from sim.env import with_robot


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None:
        """Forget anything remembered from the last episode (feed-forward policies: nothing)."""

    def act(self, obs: Any) -> np.ndarray:
        """The action for one observation, in the env's action space."""


class PolicyLoadError(PolicyError):
    """A path that holds no run directory, snapshot or bundle."""


class ChunkedPolicy:
    """A policy that gives a chunk of `length` actions per observation, executed as the bridge's chunk executor does.

    The executor sends the observation of period k with its request and executes the queued action of
    period k meanwhile; the new chunk takes over from its row for period k + 1 (one period late at best,
    the fastest link). So here: after `execute` actions of a chunk, observe again, act on the old chunk
    this period and on the new chunk's rows 1, 2, ... after it. Wraps any policy whose act returns
    length * act_dim values, flat. (The first chunk of an episode starts at its row 0: nothing is queued.)
    """

    def __init__(self, policy, length: int, execute: int | None = None) -> None:
        self.policy, self.length = policy, length
        self.execute = min(length - 1, execute or length - 1) if length > 1 else 1
        self._queue: list[np.ndarray] = []
        self._used = 0

    def reset(self) -> None:
        self._queue, self._used = [], 0
        self.policy.reset()

    def act(self, obs: Any) -> np.ndarray:
        if not self._queue:  # the episode's first period (or a chunk of 1): the fresh chunk's own row
            self._queue, self._used = list(self._chunk(obs)), 0
        action = self._queue.pop(0)
        self._used += 1
        if self._used >= self.execute and self.length > 1:
            self._queue, self._used = list(self._chunk(obs)[1:]), 0
        return action

    def _chunk(self, obs: Any) -> np.ndarray:
        return np.asarray(self.policy.act(obs)).reshape(self.length, -1)


def replan_after(length: int) -> int:
    """Actions of a chunk executed before the next observation, by default: half the chunk.

    Half leaves the other half to hide a round trip (at 20 Hz, 5 of 10 actions: 250 ms) while the
    loop still closes every few periods; the training evaluation and the twin's executor use the same.
    """
    return max(1, length // 2)


class LoadedPolicy(NamedTuple):
    policy: Policy
    kind: str  # "bundle" | "run"
    path: str
    scenario: str | None  # the scenario it was trained on, if it says
    robot: str | None
    details: dict[str, Any]  # bundle name, or training steps
    obs_mode: str = "state"  # "pixels" for a policy on camera images (it needs an env in obs_mode pixels)
    observe_command: bool = False  # its observation ends with the commanded tool target (an env with observe_command)
    spec_hash: str | None = None  # a bundle's: the observation, action and rate it acts on (bridge.spec)
    scenario_sha256: str | None = None  # a bundle's: the scenario file it was trained on (scenarios.scenario_hash)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "scenario": self.scenario, "robot": self.robot, **self.details}

    def own_scenario(self) -> str:
        """The scenario to run the policy on when none is given (a bundle's: see bundle_scenario)."""
        if self.kind != "bundle":
            if not self.scenario:
                raise PolicyLoadError(f"{self.path}: does not name its scenario; pass --scenario")
            return recorded_scenario(self.path, self.scenario)
        return bundle_scenario(self.path, {"name": self.scenario, "sha256": self.scenario_sha256}, self.robot)


def recorded_scenario(run: str | Path, scenario: str) -> str:
    """The scenario a run records (a built-in's name, or a file by its absolute path), the file checked to be there: a
    run moved to another machine, or its cell file moved, names the way on (the file may be anywhere now)."""
    if cell_file_gone(scenario):
        raise PolicyLoadError(f"{run} was trained on {scenario}, which is not there any more; pass the cell file where it "
                              "is now with --scenario")
    return scenario


def cell_file_gone(scenario: str) -> bool:
    """Whether a recorded scenario names a file that is not there (moved, or the run came from another machine)."""
    return names_a_file(scenario) and not Path(scenario).is_file()


def bundle_scenario(path: str | Path, section: dict[str, Any], robot: str | None = None) -> str:
    """The built-in cell a bundle's manifest `scenario` section names, checked against its sha256. A cell trained from
    a file of the user's carries a built-in's name or one of its own: by the name alone, eval ran the built-in cell
    (another episode length, other goals) without a word, or failed on an 'unknown scenario'."""
    name, sha256 = section.get("name"), section.get("sha256")
    if not name:
        raise PolicyLoadError(f"{path}: does not name its scenario; pass --scenario")
    if sha256 is None:
        return name  # a toy env: no scenario file
    if name not in builtin_names():
        raise PolicyLoadError(f"{path} was trained on a scenario file ({name!r}, not a built-in cell); pass it with --scenario")
    try:  # as the exporting env ran it: with the arm it was trained with (`genba train --robot`)
        ours = scenario_hash(with_robot(load_scenario(name), robot))
    except (ScenarioError, ValueError):
        ours = None
    if ours != sha256:
        raise PolicyLoadError(f"{path} was trained on a scenario file named {name!r} that differs from the built-in {name} "
                              f"(sha256 {sha256[:12]}, built-in {(ours or '?')[:12]}); pass that file with --scenario")
    return name


def load_policy(target: str | Path, which: str = "best", device: str = "cpu", executor: str = "onnxruntime") -> LoadedPolicy:
    """The policy in a bundle, a run directory (its `which` snapshot: best | final | latest) or a snapshot.

    A chunked policy is executed as the bridge's chunk executor executes it (ChunkedPolicy).
    """
    path = Path(target)
    if is_bundle(path):
        bundle = load_bundle(path, device=device, executor=executor)
        scenario = bundle.manifest.get("scenario", {}).get("name")
        robot = (bundle.manifest.get("training") or {}).get("robot")
        policy = bundle if bundle.chunk_length == 1 else ChunkedPolicy(_FlatChunks(bundle), bundle.chunk_length,
                                                                       replan_after(bundle.chunk_length))
        return LoadedPolicy(policy, "bundle", str(path), scenario, robot, {"name": bundle.name},
                            "pixels" if bundle.images else "state", bool((bundle.manifest.get("training") or {}).get("observe_command")),
                            bundle.spec_hash, bundle.manifest.get("scenario", {}).get("sha256"))
    if (path / "config.yaml").is_file():
        snap = run_snapshot(path, which)
        cfg = RunDir.open(path).config()
        scenario, robot = cfg.scenario, cfg.robot
    elif (path / "state.json").is_file():
        snap = open_snapshot(path)
        scenario, robot = snap.state.get("scenario"), snap.state.get("robot")
    else:
        raise PolicyLoadError(f"{path}: not a run directory, snapshot or bundle")
    if snap.is_pixel:
        policy = load_pixel_policy(snap, device)
    else:
        policy = SB3Policy(snap.load_model(device=device), snap.load_vecnormalize())
        residual = Residual.of_snapshot(snap)
        if residual is not None:  # a correction learnt on top of a frozen base: act as their sum
            policy = residual.policy(policy, device)
    chunk = int(snap.state.get("chunk", 1))  # snapshots from before chunks: single actions
    if chunk > 1:
        policy = ChunkedPolicy(policy, chunk, replan_after(chunk))
    return LoadedPolicy(policy, "run", str(snap.path), scenario, robot, {"steps": snap.state.get("num_timesteps")},
                        "pixels" if snap.is_pixel else "state", bool(snap.state.get("observe_command")))


class _FlatChunks:
    """A chunked bundle as ChunkedPolicy takes it: every action of the chunk, flat."""

    def __init__(self, bundle) -> None:
        self.bundle = bundle

    def reset(self) -> None:
        self.bundle.reset()

    def act(self, obs: Any) -> np.ndarray:
        return self.bundle.act_chunk(obs).ravel()
