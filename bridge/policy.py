"""What the server needs from a policy, and the checked description it hands to controllers.

``ServedPolicy`` is the subset of ``policies.bundle`` objects the bridge uses, so the server can
be exercised with any object that has these members. ``PolicyEntry`` validates the manifest
once at start-up so a bad bundle stops the server with a clear message instead of failing a
controller's handshake later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bridge.errors import BridgeError
from bridge.images import ImageSpec, ImageSpecError, image_specs
from bridge.limits import LimitsError, SafetyLimits
from bridge.spec import SpecError, spec_hash

ACTION_KINDS = ("ee_delta", "joint_delta")


class BundleSpecError(BridgeError):
    """A bundle whose manifest lacks what the bridge needs to serve it safely."""


@runtime_checkable
class ServedPolicy(Protocol):
    name: str  # the manifest name: what a hello's bundle field names
    spec_hash: str  # bridge.spec.spec_hash(manifest observation, action, control_hz)
    obs_dim: int
    act_dim: int
    control_hz: float
    manifest: dict[str, Any]
    # Optional: chunk_length (int, default 1). A chunked policy's act returns (B, chunk_length * act_dim):
    # the actions for this control period and the chunk_length - 1 after it, one period apart.
    # Optional: images (list of maps: key, shape [H, W, C], dtype uint8, modality rgb | depth, channel_order),
    # default none. A pixel policy's act_batch_unchecked(x, images) (or act(x, images)) takes float32
    # (B, obs_dim) and images {key: uint8 (B, H, W, C)}, views the server reuses after the call.

    def reset(self) -> None:
        """A controller's episode starts (the `reset` message)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """float32 (B, obs_dim) -> float32 (B, act_dim) in [-1, 1], deterministic."""


@dataclass(frozen=True)
class PolicyEntry:
    policy: ServedPolicy
    name: str
    spec_hash: str
    obs_dim: int
    act_dim: int
    control_hz: float
    action_kind: str
    action_low: list[float]
    action_high: list[float]
    limits: SafetyLimits
    observation: dict[str, Any]  # the manifest's sections, as the welcome carries them
    action: dict[str, Any]
    chunk_length: int = 1  # actions per forward pass, one control period apart (1: a single-action policy)
    images: tuple[ImageSpec, ...] = ()  # camera inputs besides the vector (a pixel bundle); encoding raw here

    @classmethod
    def describe(cls, policy: ServedPolicy) -> PolicyEntry:
        where = f"bundle {getattr(policy, 'name', '?')!r}"
        manifest = policy.manifest
        if not isinstance(manifest, dict):
            raise BundleSpecError(f"{where}: manifest must be a mapping")
        action = manifest.get("action")
        if not isinstance(action, dict):
            raise BundleSpecError(f"{where}: manifest has no 'action' section")
        kind = action.get("kind")
        if not isinstance(kind, str) or not kind:
            raise BundleSpecError(f"{where}: manifest action.kind must name the action meaning (e.g. {list(ACTION_KINDS)})")
        try:
            limits = SafetyLimits.from_robot_spec(manifest.get("robot"), where=f"{where} manifest robot")
        except LimitsError as exc:
            raise BundleSpecError(
                f"{exc}; the bridge serves a bundle only with its robot's safety limits (export it from an env "
                "whose feature_spec() describes the robot, as the sim cells do)"
            ) from None
        if not (isinstance(policy.control_hz, (int, float)) and policy.control_hz > 0):
            raise BundleSpecError(f"{where}: control_hz must be positive, got {policy.control_hz!r}")
        observation = manifest.get("observation")
        if not isinstance(observation, dict):
            raise BundleSpecError(f"{where}: manifest has no 'observation' section")
        # Controllers recompute the hash from the welcome's sections and control_hz: they must agree.
        try:
            computed = spec_hash(observation, action, float(policy.control_hz))
        except SpecError as exc:
            raise BundleSpecError(f"{where}: {exc}") from None
        if computed != policy.spec_hash:
            raise BundleSpecError(f"{where}: spec_hash {str(policy.spec_hash)[:16]}... is not the hash of its manifest's "
                                  f"observation/action and control_hz ({computed[:16]}...); re-export the bundle")
        chunk = getattr(policy, "chunk_length", 1)
        if type(chunk) is not int or chunk < 1:
            raise BundleSpecError(f"{where}: chunk_length must be an int >= 1, got {chunk!r}")
        try:
            # A loaded Bundle lists ImageInput objects whose description is the manifest entry; other policies, maps.
            images = image_specs([getattr(i, "description", i) for i in getattr(policy, "images", None) or ()], where)
        except ImageSpecError as exc:
            raise BundleSpecError(str(exc)) from None
        low = np.broadcast_to(np.asarray(action.get("low", -1.0), dtype=float), (policy.act_dim,))
        high = np.broadcast_to(np.asarray(action.get("high", 1.0), dtype=float), (policy.act_dim,))
        return cls(
            policy=policy,
            name=policy.name,
            spec_hash=policy.spec_hash,
            obs_dim=int(policy.obs_dim),
            act_dim=int(policy.act_dim),
            control_hz=float(policy.control_hz),
            action_kind=kind,
            action_low=low.tolist(),
            action_high=high.tolist(),
            limits=limits,
            observation=observation,
            action=action,
            chunk_length=chunk,
            images=images,
        )
