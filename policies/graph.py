"""One torch module per SB3 model: flat raw observation in, deterministic env action out.

Everything `VecNormalize.normalize_obs` + `model.predict(obs, deterministic=True)` does is folded in,
so the exported ONNX / TorchScript graph acts alone: observation normalisation (and clipping), the
Dict-observation split, the policy's deterministic head, then tanh-unscaling or clipping of the action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from policies.errors import PolicyError
from policies.features import DICT_OBS_ORDER

# Clip used for observation keys VecNormalize leaves alone: large enough to be a no-op in float32.
_NO_CLIP = 3.0e38


class ExportError(PolicyError):
    """A model that cannot be exported: unsupported algorithm, action space or observation layout."""


@dataclass(frozen=True)
class ObsLayout:
    """How the flat bundle observation maps onto the model's observation space."""

    keys: tuple[str, ...] | None  # Dict keys in flat order, None for a Box observation
    sizes: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def dim(self) -> int:
        return int(sum(self.sizes))

    @staticmethod
    def of(space: spaces.Space) -> "ObsLayout":
        if isinstance(space, spaces.Box):
            return ObsLayout(None, (int(np.prod(space.shape)),), (tuple(space.shape),))
        if isinstance(space, spaces.Dict):
            extra = sorted(set(space.spaces) - set(DICT_OBS_ORDER))
            keys = tuple(k for k in DICT_OBS_ORDER if k in space.spaces) + tuple(extra)
            for k in keys:
                if not isinstance(space.spaces[k], spaces.Box):
                    raise ExportError(f"Dict observation key {k!r} is {type(space.spaces[k]).__name__}; only Box values can be exported")
            boxes = [space.spaces[k] for k in keys]
            return ObsLayout(keys, tuple(int(np.prod(b.shape)) for b in boxes), tuple(tuple(b.shape) for b in boxes))
        raise ExportError(f"observation space {type(space).__name__} cannot be exported; use Box or Dict of Box")


def normalization_arrays(layout: ObsLayout, vecnormalize) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(mean, std, clip) per flat element from a VecNormalize, or None when observations are not normalised."""
    if vecnormalize is None or not getattr(vecnormalize, "norm_obs", False):
        return None
    eps, clip = float(vecnormalize.epsilon), float(vecnormalize.clip_obs)
    if layout.keys is None:
        rms = vecnormalize.obs_rms
        mean, var = rms.mean.reshape(-1), rms.var.reshape(-1)
        return mean, np.sqrt(var + eps), np.full(layout.dim, clip)
    means, stds, clips = [], [], []
    normed = set(vecnormalize.norm_obs_keys or [])
    for key, size in zip(layout.keys, layout.sizes):
        if key in normed:
            rms = vecnormalize.obs_rms[key]
            means.append(rms.mean.reshape(-1))
            stds.append(np.sqrt(rms.var.reshape(-1) + eps))
            clips.append(np.full(size, clip))
        else:
            means.append(np.zeros(size)), stds.append(np.ones(size)), clips.append(np.full(size, _NO_CLIP))
    return np.concatenate(means), np.concatenate(stds), np.concatenate(clips)


class _DeterministicHead(nn.Module):
    """The SB3 policy's deterministic action (before predict's clip/unscale), per algorithm family.

    Holds only the acting sub-modules (no critics), so the exported graph carries no dead weights.
    """

    def __init__(self, policy: nn.Module, family: str):
        super().__init__()
        self.family = family
        if family == "actor_critic":
            self.observation_space, self.normalize_images = policy.observation_space, policy.normalize_images
            self.features = policy.pi_features_extractor
            self.latent = policy.mlp_extractor.policy_net
            self.action_net = policy.action_net
            self.squash = bool(policy.squash_output)
        else:
            self.actor = policy.actor

    def forward(self, obs):
        if self.family == "actor_critic":  # PPO/A2C: Gaussian mean (tanh if gSDE squashes)
            from stable_baselines3.common.preprocessing import preprocess_obs

            pre = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
            action = self.action_net(self.latent(self.features(pre)))
            return torch.tanh(action) if self.squash else action
        if self.family == "squashed_gaussian":  # SAC/TQC: tanh of the Gaussian mean
            mean, _, _ = self.actor.get_action_dist_params(obs)
            return torch.tanh(mean)
        return self.actor(obs)  # TD3/DDPG: the actor is already deterministic (ends in tanh)


def policy_family(model) -> str:
    name = type(model).__name__
    families = {"PPO": "actor_critic", "A2C": "actor_critic", "RecurrentPPO": None, "SAC": "squashed_gaussian",
                "TQC": "squashed_gaussian", "TD3": "deterministic", "DDPG": "deterministic"}
    family = families.get(name)
    if family is None:
        raise ExportError(f"cannot export a {name} model; supported: PPO, A2C, SAC, TQC, TD3, DDPG")
    return family


class PolicyGraph(nn.Module):
    """Flat float32 observation (B, obs_dim) -> float32 action (B, act_dim) in the env's action space."""

    def __init__(self, model, vecnormalize=None):
        super().__init__()
        policy = model.policy
        if not isinstance(model.action_space, spaces.Box):
            raise ExportError(f"action space {type(model.action_space).__name__} cannot be exported; only Box (continuous) actions")
        self.layout = ObsLayout.of(model.observation_space)
        self.head = _DeterministicHead(policy, policy_family(model))
        norm = normalization_arrays(self.layout, vecnormalize)
        self.normalize = norm is not None
        mean, std, clip = norm if norm is not None else (np.zeros(self.layout.dim), np.ones(self.layout.dim), np.full(self.layout.dim, _NO_CLIP))
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("obs_clip", torch.as_tensor(clip, dtype=torch.float32))
        low, high = model.action_space.low.astype(np.float32), model.action_space.high.astype(np.float32)
        self.register_buffer("act_low", torch.as_tensor(low))
        self.register_buffer("act_high", torch.as_tensor(high))
        # SB3's predict unscales a squashed (tanh) action to the space and clips any other one.
        self.unscale = bool(policy.squash_output)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        if self.normalize:
            x = (x - self.obs_mean) / self.obs_std
            x = torch.maximum(torch.minimum(x, self.obs_clip), -self.obs_clip)
        if self.layout.keys is not None:
            parts, start = {}, 0
            for key, size, shape in zip(self.layout.keys, self.layout.sizes, self.layout.shapes):
                parts[key] = x[:, start:start + size].reshape((-1,) + shape)
                start += size
            x = parts
        action = self.head(x)
        if self.unscale:
            return self.act_low + 0.5 * (action + 1.0) * (self.act_high - self.act_low)
        return torch.maximum(torch.minimum(action, self.act_high), self.act_low)

    def describe(self) -> dict:
        """What the graph folds in, for the manifest (stated, since it is already applied inside)."""
        norm = None
        if self.normalize:
            norm = {"folded": True, "formula": "clip((obs - mean) / std, -clip, clip)",
                    "mean": self.obs_mean.tolist(), "std": self.obs_std.tolist(), "clip": self.obs_clip.tolist()}
        scaling = {"folded": True, "squashed": self.unscale,
                   "formula": "low + 0.5 * (tanh_action + 1) * (high - low)" if self.unscale else "clip(action, low, high)",
                   "low": self.act_low.tolist(), "high": self.act_high.tolist()}
        return {"observation_normalization": norm, "action_scaling": scaling}
