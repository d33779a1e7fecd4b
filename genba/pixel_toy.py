"""A toy pixel policy for the bridge's camera path: numpy only, its actions tell which frames arrived.

Until pixel bundles are served from files, the bridge's image tests, its image bench and the twin's
pixels test serve this object. It has what bridge.policy.ServedPolicy asks of a pixel bundle
(``images``, ``act_batch_unchecked(x, images)``), and each action shows what it was given: component j
(j < number of cameras) is camera j's mean intensity mapped to [-1, 1], the others tanh of the
vector's values. It records the batch size of every forward pass, and on request copies of the
frames and a gate that holds a pass until a test opens it. Not a network: latencies measured with it
are the bridge's own, without a real model's inference time.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import numpy as np

from bridge import gantry
from bridge.images import image_specs
from bridge.spec import spec_hash


def gantry_pixel_spec(cameras: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The gantry's feature spec (bridge.gantry) with camera inputs: key -> [H, W, C] (C 1: depth)."""
    spec = gantry.feature_spec()
    features = spec["observation"]
    spec["observation"] = {"dim": sum(f["size"] for f in features), "dtype": "float32", "features": features,
                           "layout": {"type": "flat"}, "mode": "pixels",
                           "images": [_toy_image(k, s) for k, s in cameras.items()]}
    return spec


TOY_DEPTH_RANGE = {"encoding": "linear", "near_m": 0.3, "far_m": 1.2}  # what the toy says its depth's 0..255 spans


def _toy_image(key: str, shape: Sequence[int]) -> dict[str, Any]:
    """A camera input as a manifest describes it (the spec hash covers modality, and a depth image's range)."""
    depth = shape[2] == 1
    return {"key": key, "shape": list(shape), "dtype": "uint8", "modality": "depth" if depth else "rgb",
            "channel_order": "D" if depth else "RGB", "depth": TOY_DEPTH_RANGE if depth else None}


class MeanPixelPolicy:
    """A ServedPolicy with image inputs whose actions are read-outs of the frames' means and the vector."""

    device = "cpu"  # the server's auto mode may run it inline, as it would a small CPU bundle

    def __init__(self, feature_spec: dict[str, Any], name: str = "toy-pixels", record_frames: int = 0) -> None:
        """feature_spec: an env's (or gantry_pixel_spec's) description whose observation lists ``images``."""
        observation, action = feature_spec["observation"], feature_spec["action"]
        self.name = name
        self.control_hz = float(feature_spec["control_hz"])
        self.manifest = {"name": name, "observation": observation, "action": action, "robot": feature_spec["robot"]}
        self.spec_hash = spec_hash(observation, action, self.control_hz)
        self.obs_dim = sum(f["size"] for f in observation["features"])
        self.act_dim = sum(f["size"] for f in action["features"])
        # As a pixel Bundle lists them: modality and channel order spelled out (an env's description leaves them implicit).
        self.images = [{"key": s.key, "shape": list(s.shape), "dtype": "uint8", "modality": s.modality,
                        "channel_order": s.channel_order} for s in image_specs(observation["images"], name)]
        self.record_frames = record_frames
        self.batches: list[int] = []  # the batch size of each forward pass
        self.frames: list[dict[str, np.ndarray]] = []  # copies of the first record_frames requests' frames
        self.gate = threading.Event()  # a forward pass waits until this is set (set: no waiting)
        self.gate.set()
        self.entered = threading.Event()  # set by the first forward pass that starts
        keys = [i["key"] for i in self.images]
        self._mean_keys = keys[: self.act_dim]  # component j < cameras: camera j's mean
        rest = range(len(self._mean_keys), self.act_dim)  # the others: tanh of vector value (j - cameras) mod obs_dim
        self._tanh_columns = np.array([(j - len(keys)) % max(1, self.obs_dim) for j in rest], dtype=np.intp) \
            if len(rest) else None

    def reset(self) -> None:
        pass

    def act_batch_unchecked(self, x: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        images = images or {}  # a spec without cameras makes a state policy: the vector alone
        n = len(x)
        self.batches.append(n)
        # The events' flags are read before their locks are taken: after a control period's idle, each
        # lock costs tens of microseconds on this host, and the bench times the bridge with this policy.
        if not self.entered.is_set():
            self.entered.set()
        if not self.gate.is_set() and not self.gate.wait(30):
            raise TimeoutError("the gate of the toy pixel policy was never opened")
        if len(self.frames) < self.record_frames:
            for row in range(min(n, self.record_frames - len(self.frames))):
                self.frames.append({key: np.array(frames[row]) for key, frames in images.items()})
        # As few numpy calls as the read-outs allow (an integer sum is exact, and cheaper than a float mean).
        actions = np.empty((n, self.act_dim), dtype=np.float32)
        for j, key in enumerate(self._mean_keys):
            frames = images[key]
            actions[:, j] = frames.reshape(n, -1).sum(axis=1, dtype=np.uint64) / frames[0].size / 127.5 - 1.0
        if self._tanh_columns is not None:
            actions[:, len(self._mean_keys):] = np.tanh(x[:, self._tanh_columns]) if self.obs_dim else 0.0
        return actions

    act = act_batch_unchecked


def mean_action(frame: np.ndarray) -> float:
    """The action component a camera's frame gives (MeanPixelPolicy), float32 as the server computes it."""
    return float(np.float32(frame.reshape(-1).mean(dtype=np.float64) / 127.5 - 1.0))
