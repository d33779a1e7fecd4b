"""Save and load model snapshots (checkpoint, best, final): SB3 model + replay buffer + VecNormalize,
or a pixel student's network (pixel_policy.pt).

A snapshot directory is written atomically (see rundir.atomic_dir); state.json is its last file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from policies.bundle_format import sha256_file
from policies.rundir import RunDir, RunError, atomic_dir, recover_dir

MODEL, BUFFER, VECNORM, STATE = "model.zip", "replay_buffer.pkl", "vecnormalize.pkl", "state.json"
PIXEL_MODEL = "pixel_policy.pt"  # a pixel student (policies.pixel_net): its config and state dict, torch.save


def algo_class(algo: str):
    from sb3_contrib import TQC
    from stable_baselines3 import PPO, SAC, TD3

    return {"ppo": PPO, "sac": SAC, "td3": TD3, "tqc": TQC}[algo]


def save_snapshot(target: Path, model, vecnormalize=None, *, with_buffer: bool = False, state: dict[str, Any]) -> Path:
    state = _with_relative_base(state, target)
    with atomic_dir(target) as tmp:
        model.save(tmp / MODEL)
        if with_buffer and getattr(model, "replay_buffer", None) is not None:
            model.save_replay_buffer(tmp / BUFFER)
        if vecnormalize is not None:
            vecnormalize.save(str(tmp / VECNORM))
        (tmp / STATE).write_text(json.dumps(state, indent=2) + "\n")
    return target


def save_pixel_snapshot(target: Path, net, *, state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """A pixel student's snapshot; `extra` (optimiser, counters) makes it a resumable checkpoint."""
    import torch

    with atomic_dir(target) as tmp:
        torch.save({"config": net.config(), "state_dict": net.state_dict(), **(extra or {})}, tmp / PIXEL_MODEL)
        (tmp / STATE).write_text(json.dumps(state, indent=2) + "\n")
    return target


def _with_relative_base(state: dict[str, Any], target: Path) -> dict[str, Any]:
    """A residual run's base (policies.residual) also as a path relative to this snapshot, so a run moved together
    with its base still finds it (the absolute path stays, for a run moved alone)."""
    info = state.get("residual")
    if not isinstance(info, dict) or not info.get("base"):
        return state
    try:
        relative = os.path.relpath(info["base"], target.parent.resolve() / target.name)
    except ValueError:  # another drive (Windows): the absolute path only
        return state
    return {**state, "residual": {**info, "base_relative": relative}}


def model_digest(path: Path) -> str:
    """sha256 over a snapshot's model files (network and observation statistics): what its actions depend on."""
    h = hashlib.sha256()
    for name in (MODEL, VECNORM, PIXEL_MODEL):
        if (path / name).is_file():
            h.update(f"{name} {sha256_file(path / name)}\n".encode())
    return h.hexdigest()


@dataclass
class Snapshot:
    path: Path
    state: dict[str, Any]

    @property
    def algo(self) -> str:
        return self.state["algo"]

    @property
    def is_pixel(self) -> bool:
        """Whether this is a pixel student's snapshot (a network on images), not an SB3 model's."""
        return (self.path / PIXEL_MODEL).is_file()

    def load_model(self, env=None, device: str = "cpu", **kwargs):
        if self.is_pixel:
            raise RunError(f"{self.path}: a pixel policy snapshot holds no SB3 model; use policies.pixel_net.load_pixel_net")
        cls = algo_class(self.algo)
        if env is None and self.algo != "ppo":
            # Acting only: no env to give a HER buffer and no need for a full-size one.
            objs = {"replay_buffer_class": None, "replay_buffer_kwargs": {}, "buffer_size": 1}
            kwargs["custom_objects"] = {**objs, **kwargs.get("custom_objects", {})}
        with damaged_file(self.path / MODEL):
            return cls.load(self.path / MODEL, env=env, device=device, **kwargs)

    def load_vecnormalize(self, venv=None):
        """The saved VecNormalize (statistics only when `venv` is None), or None if there is none."""
        path = self.path / VECNORM
        if not path.is_file():
            return None
        if venv is not None:
            from stable_baselines3.common.vec_env import VecNormalize

            return VecNormalize.load(str(path), venv)
        with open(path, "rb") as f:
            return pickle.load(f)  # a local run artefact we wrote; bundles carry no pickle

    def load_buffer_into(self, model) -> bool:
        path = self.path / BUFFER
        if path.is_file():
            with warnings.catch_warnings():
                # HER's buffer warns that it ends its unfinished episode: right here, a resumed run starts a new one
                warnings.filterwarnings("ignore", message="The last trajectory in the replay buffer will be truncated")
                model.load_replay_buffer(path)
            return True
        return False


def open_snapshot(path: Path) -> Snapshot:
    found = recover_dir(path)
    if found is None or not (found / STATE).is_file() or not ((found / MODEL).is_file() or (found / PIXEL_MODEL).is_file()):
        raise RunError(f"{path}: no complete model snapshot")
    with damaged_file(found / STATE):
        state = json.loads((found / STATE).read_text())
    if not isinstance(state, dict):
        raise RunError(f"{found / STATE}: expected the snapshot's state (a JSON object), got {type(state).__name__}")
    return Snapshot(found, state)


@contextlib.contextmanager
def damaged_file(path: Path) -> Iterator[None]:
    """A run file that does not load (truncated, emptied or overwritten from outside: snapshots are written whole; or
    SB3 refusing it for the env given) as a RunError naming it with the loader's first line, not its traceback."""
    try:
        yield
    except (ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise RunError(f"{path}: cannot load it: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None


def run_snapshot(run_path: Path, which: str = "best") -> Snapshot:
    """A run's `best` (falls back to final, then the latest checkpoint), `final`, or `latest` snapshot."""
    run = RunDir.open(run_path)
    order = {"best": ["best", "final", "latest"], "final": ["final"], "latest": ["latest"]}.get(which)
    if order is None:
        raise RunError(f"--which {which!r}: use best, final or latest")
    for kind in order:
        path = run.latest_checkpoint() if kind == "latest" else recover_dir(getattr(run, kind))
        if path is not None and (path / STATE).is_file():
            return open_snapshot(path)
    raise RunError(f"{run.path}: no {which} model yet (training has not saved one)")


def best_eval(run: RunDir) -> dict[str, Any] | None:
    """The evaluation record of the policy in the run's best/ (its state.json's `eval`), or None before there is one."""
    path = recover_dir(run.best)
    if path is None or not (path / STATE).is_file():
        return None
    record = open_snapshot(path).state.get("eval")
    return record if isinstance(record, dict) else None


def open_init(path: str):
    """The policy snapshot of the run (or snapshot dir) given to --init."""
    p = Path(path)
    if (p / "config.yaml").is_file():
        return run_snapshot(p, "best")
    if (p / "state.json").is_file():
        return open_snapshot(p)
    raise RunError(f"--init {path}: not a run directory or snapshot")
