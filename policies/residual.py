"""Residual RL: a policy that learns a correction on top of a frozen base policy (a BC clone).

The env action is clip(base(obs) + scale * residual(obs)). The residual's network starts at zero output,
so training starts exactly at the base policy's behaviour and RL only has to learn what to change, which
keeps the collapse of a BC actor handed straight to SAC away (Johannink et al., 2019, "Residual
Reinforcement Learning for Robot Control"). `scale` bounds how far the residual can move each action
value: small for motion, large enough on the grip to open or close the tool on its own.

The residual may observe more than its base: with `base_obs` set, the base sees only the first `base_obs`
values of the observation (the layout it was trained on) and the residual all of it, e.g. the commanded
tool target appended by an env's observe_command, which a cloned base would learn to copy its last action from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policies.models import settle_actor
from policies.rundir import RunError, recover_dir
from policies.sb3_policy import SB3Policy
from policies.snapshot import Snapshot, model_digest, open_snapshot


def scale_vector(scale: float | Sequence[float], size: int) -> np.ndarray:
    """One scale per action value: a number for all, or a list of `size` numbers."""
    values = np.full(size, float(scale)) if np.isscalar(scale) else np.asarray(scale, dtype=np.float64)
    if values.shape != (size,):
        raise ValueError(f"residual scale: {len(values)} values for an action of {size}")
    if (values <= 0).any():
        raise ValueError(f"residual scale: every value must be > 0, got {values.tolist()}")
    return values


def combine(base: np.ndarray, residual: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The env action: base + scale * residual, clipped to genba's action box [-1, 1]."""
    return np.clip(np.asarray(base) + scale * np.asarray(residual), -1.0, 1.0).astype(np.float32)


def base_view(obs: Any, base_obs: int | None) -> Any:
    """What the base policy sees of an observation: its first base_obs values (None: all of it)."""
    return obs if base_obs is None else obs[:base_obs]


class ResidualEnv(gym.Wrapper):
    """The env as the residual learner sees it: its action is a correction to `base`'s action for the same observation."""

    def __init__(self, env: gym.Env, base, scale: float | Sequence[float], base_obs: int | None = None):
        super().__init__(env)
        self.base, self.base_obs = base, base_obs
        self.scale = scale_vector(scale, int(np.prod(env.action_space.shape)))
        self._base_action: np.ndarray | None = None

    def reset(self, **kwargs) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.base.reset()
        self._base_action = self.base.act(base_view(obs, self.base_obs))
        return obs, info

    def step(self, residual):
        obs, reward, terminated, truncated, info = self.env.step(combine(self._base_action, residual, self.scale))
        self._base_action = self.base.act(base_view(obs, self.base_obs))
        return obs, reward, terminated, truncated, info


class ResidualPolicy:
    """base + scale * residual, both policies with reset()/act() on the raw observation (the base on its first base_obs values)."""

    def __init__(self, base, residual, scale: np.ndarray, base_obs: int | None = None):
        self.base, self.residual, self.scale, self.base_obs = base, residual, scale, base_obs

    def reset(self) -> None:
        self.base.reset()
        self.residual.reset()

    def act(self, obs: Any) -> np.ndarray:
        return combine(self.base.act(base_view(obs, self.base_obs)), self.residual.act(obs), self.scale)


class ResidualGraph(nn.Module):
    """The exported form: two PolicyGraphs on the same raw observation (the base on its first base_obs values),
    summed and clipped to the action box."""

    def __init__(self, base: nn.Module, residual: nn.Module, scale: np.ndarray, base_obs: int | None = None):
        super().__init__()
        self.base, self.residual = base, residual
        self.base_obs = base_obs if base_obs is not None else residual.layout.dim
        self.layout = residual.layout
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    @property
    def act_low(self) -> torch.Tensor:
        return self.base.act_low

    @property
    def act_high(self) -> torch.Tensor:
        return self.base.act_high

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        action = self.base(obs[..., : self.base_obs]) + self.scale * self.residual(obs)
        return torch.maximum(torch.minimum(action, self.act_high), self.act_low)

    def describe(self) -> dict:
        return {**self.base.describe(), "residual": {
            "formula": "clip(base(obs[:base_obs]) + scale * residual(obs), low, high)", "scale": self.scale.tolist(),
            "base_obs": self.base_obs,
            "residual": self.residual.describe()}}


def zero_correction(model, log_std: float | None) -> None:
    """Make a fresh model's deterministic action zero, so a residual run starts exactly at its base policy.

    log_std: the Gaussian's log-std to explore with (PPO's parameter, SAC/TQC's head); TD3 keeps its action noise.
    """
    policy = model.policy
    with torch.no_grad():
        if hasattr(policy, "action_net"):  # PPO/A2C: the mean's linear layer and a state-independent log-std
            policy.action_net.weight.zero_()
            policy.action_net.bias.zero_()
            if log_std is not None:
                policy.log_std.fill_(log_std)
            return
        mu = model.actor.mu if isinstance(model.actor.mu, nn.Linear) else model.actor.mu[-2]  # TD3's mu ends in Tanh
        mu.weight.zero_()
        mu.bias.zero_()
    settle_actor(model, log_std)


@dataclass(frozen=True)
class Residual:
    """What a residual run adds to its model: the base snapshot it corrects and the scale per action value.

    Recorded in every snapshot's state.json ("residual"), so a snapshot acts, evaluates and exports as the sum.
    The base is recorded by absolute path, by a path relative to the snapshot (save_snapshot adds "base_relative"),
    so a run moved together with its base still finds it, and by the sha256 of its model files, so a base replaced
    since training is refused rather than silently corrected by a residual learnt on another policy.
    """

    base: str
    scale: tuple[float, ...]
    base_obs: int | None = None  # the base sees the observation's first base_obs values; None: all of it
    base_sha256: str | None = None  # policies.snapshot.model_digest of the base when the run started; None: an older run
    owner: str | None = field(default=None, compare=False)  # the snapshot that recorded this base (messages only)
    recorded: str | None = field(default=None, compare=False)  # the absolute path recorded, when `base` is the moved one

    @staticmethod
    def of_snapshot(snap: Snapshot) -> "Residual | None":
        """The residual a snapshot's state.json records (None: a plain policy); its base_relative resolves from the
        snapshot's own folder."""
        info = snap.state.get("residual")
        if not info:
            return None
        base, recorded = info["base"], None
        if info.get("base_relative"):
            moved = Path(os.path.normpath(Path(snap.path).resolve() / info["base_relative"]))
            if recover_dir(moved) is not None and str(moved) != base:  # e.g. the run and its base moved together
                base, recorded = str(moved), base
        return Residual(base, tuple(info["scale"]), info.get("base_obs"), info.get("base_sha256"), str(snap.path), recorded)

    def to_state(self) -> dict[str, Any]:
        state = {"base": self.base, "scale": list(self.scale), "base_obs": self.base_obs}
        return {**state, "base_sha256": self.base_sha256} if self.base_sha256 else state

    def base_snapshot(self) -> Snapshot:
        """The base (where its relative path points when both moved together, else at its recorded path); with a
        checksum, the recorded path is tried too when the first is another policy."""
        whose = f"{self.owner}: its residual base policy" if self.owner else "the residual base policy"
        places = [Path(p) for p in (self.base, self.recorded) if p and recover_dir(Path(p)) is not None]
        if not places:
            raise RunError(f"{whose} {self.base} is gone (moved or deleted): put it back, or move the fine-tuned run "
                           "and its base together")
        snaps = []
        for path in places:
            try:
                snap = open_snapshot(path)
            except RunError as exc:
                raise RunError(f"{whose}: {exc}") from None
            if not self.base_sha256 or model_digest(snap.path) == self.base_sha256:
                return snap
            snaps.append(snap)
        raise RunError(f"{whose} {snaps[0].path} changed since training (its model files' sha256 differs): the correction "
                       "was learnt on the old base; restore it, or fine-tune again on this one")

    def base_policy(self, device: str = "cpu") -> SB3Policy:
        snap = self.base_snapshot()
        return SB3Policy(snap.load_model(device=device), snap.load_vecnormalize())

    def policy(self, correction, device: str = "cpu") -> ResidualPolicy:
        return ResidualPolicy(self.base_policy(device), correction, np.asarray(self.scale), self.base_obs)

    def __call__(self, env: gym.Env) -> ResidualEnv:
        """The env wrapped for learning the correction (picklable, so subprocess envs load the base themselves)."""
        return ResidualEnv(env, self.base_policy(), self.scale, self.base_obs)


def residual_of(init: Snapshot, scale: float | Sequence[float], action_size: int, base_obs: int | None = None) -> Residual:
    """The residual setup of a run that corrects `init` (an SB3 snapshot acting one action per observation);
    base_obs: how many leading observation values `init` sees, when the run observes more."""
    if init.is_pixel:
        raise ValueError(f"residual: the base {init.path} is a pixel policy; a residual corrects a state policy")
    if int(init.state.get("chunk", 1)) != 1:
        raise ValueError(f"residual: the base {init.path} gives action chunks; a residual corrects one action per observation")
    return Residual(str(init.path.resolve()), tuple(scale_vector(scale, action_size).tolist()), base_obs, model_digest(init.path))
