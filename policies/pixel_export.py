"""Write a pixel policy's bundle: uint8 camera images and the robot's readings in, actions out (format 3).

The graph is the student network itself (policies.pixel_net.PixelPolicyNet), whose preprocessing is inside
it: one uint8 (B, H, W, C) input per image key, named by the key, then the float32 (B, P) readings vector
("vector", the vector keys concatenated in the manifest's layout order), out the actions in [-1, 1].
The manifest describes each image (modality, channel order, depth range, intrinsics, camera pose) so a
controller can produce the same pixels from its own camera. See docs/bundle-format.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from gymnasium import spaces

from bridge.spec import IMAGE_MODALITIES
from policies.bundle_format import IMAGES_FORMAT_VERSION, VECTOR_INPUT
from policies.errors import PolicyError
from policies.export import ONNX_OPSET, _action_section, _features, _one_action_space, refuse_existing, write_bundle, write_graphs
from policies.graph import ExportError
from policies.pixel_data import PixelData, last_recorded_round
from policies.pixel_net import PixelPolicyNet, load_pixel_net, split_keys

CHANNEL_ORDERS = {"rgb": "RGB", "depth": "D"}
EXPORT_SAMPLES = 16  # random observations the export self-check runs when no recorded ones are given
# A run's recorded steps the self-check runs instead: random noise frames drive a CNN far from anything a camera
# shows, where ONNX Runtime's and torch's summation orders drift apart further (a bin-sort student: 1.3e-5 on
# 16 noise frames, 2.8e-6 on 1,000 of its recorded steps).
EXPORT_RECORDED_SAMPLES = 256


def export_pixel_bundle(
    net: PixelPolicyNet,
    out_dir: str | Path,
    *,
    observation_space: spaces.Dict,
    action_space: spaces.Box,
    feature_spec: Mapping[str, Any],
    scenario: Any = None,
    training: Mapping[str, Any] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    chunk_length: int = 1,
    samples: Mapping[str, np.ndarray] | None = None,
    samples_from: str | None = None,
) -> Path:
    """Export a pixel student as a bundle directory and return its path.

    observation_space: the env's pixels observation space (obs_mode "pixels"); action_space: one action's.
    feature_spec: `env.unwrapped.feature_spec()` in pixels mode (its observation lists the images).
    samples: observations {key: batched array} the export self-check compares the graphs on (default:
        EXPORT_SAMPLES random ones); samples_from: where they came from, for the manifest's export_check.
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    torch.set_num_threads(1)
    net = net.to("cpu").eval()
    image_keys, vector_keys = split_keys(observation_space)
    feature_spec = dict(feature_spec)
    spec_obs = feature_spec.get("observation") or {}
    observation = {**_vector_section(observation_space, image_keys, vector_keys, spec_obs, net),
                   "images": _image_section(observation_space, image_keys, spec_obs.get("images"), net)}
    action = _action_section(action_space, feature_spec.get("action"))
    if net.act_dim != action["dim"] * chunk_length:
        raise ExportError(f"the network acts with {net.act_dim} values, not chunk_length {chunk_length} x the env's "
                          f"{action['dim']}-value action")
    inputs = _graph_inputs(samples, observation_space, image_keys, vector_keys)
    io_info = {"obs_dim": net.vector_dim, "act_dim": net.act_dim,
               "inputs": [{"name": k, "shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in inputs.items()]}
    policy = {"algo": "bc", "student": "pixels", "input": list(inputs), "output": "action", "onnx_opset": ONNX_OPSET,
              "image_preprocessing": {"folded": True, "formula": "float(image) / 255, HWC -> CHW, images stacked on channels "
                                      "in input order"},
              "observation_normalization": {"folded": True, "formula": "(vector - mean) / std",
                                            "mean": net.vector_mean.reshape(-1).tolist(), "std": net.vector_std.reshape(-1).tolist()},
              "action_scaling": {"folded": True, "squashed": True, "formula": "tanh: actions in [-1, 1]"},
              "architecture": net.config()}
    source = (samples_from or "given") if samples is not None else f"{EXPORT_SAMPLES} random within the observation space"
    return write_bundle(out_dir, lambda tmp: write_graphs(net, tmp, inputs, io_info, source), format_version=IMAGES_FORMAT_VERSION,
                        name=name, observation=observation, action=action, feature_spec=feature_spec,
                        chunk_length=chunk_length, scenario=scenario, policy=policy, training=training)


def export_pixel_snapshot(snap, out_dir: str | Path, *, env, scenario: Any, training: Mapping[str, Any], name: str | None,
                          overwrite: bool, run_path: Path | None = None) -> Path:
    """A run's pixel snapshot (policies.snapshot.Snapshot) as a bundle; `env` is the run's env in pixels mode. The
    self-check runs on steps the run at run_path recorded, where it kept them."""
    chunk = int(snap.state.get("chunk", 1))
    recorded = recorded_samples(run_path, env.observation_space) if run_path is not None else None
    samples, source = recorded if recorded is not None else (None, None)
    return export_pixel_bundle(load_pixel_net(snap, "cpu"), out_dir, observation_space=env.observation_space,
                               action_space=_one_action_space(_tiled(env.action_space, chunk), chunk),
                               feature_spec=env.unwrapped.feature_spec(), scenario=scenario, training=training, name=name,
                               overwrite=overwrite, chunk_length=chunk, samples=samples, samples_from=source)


def recorded_samples(run_path: Path, space: spaces.Dict) -> tuple[dict[str, np.ndarray], str] | None:
    """EXPORT_RECORDED_SAMPLES steps spread evenly over the last round the run recorded, and where from; None
    when it kept none."""
    where = last_recorded_round(run_path)
    if where is None:
        return None
    data, rows = PixelData.load_spread(where, EXPORT_RECORDED_SAMPLES)  # its errors name the file
    try:
        observations = data.observations(np.arange(len(rows)), space)
    except PolicyError as exc:
        raise ExportError(f"{where}: {exc}") from None
    return observations, f"{len(rows)} steps recorded in {where.relative_to(run_path)}"


def _tiled(space: spaces.Box, n: int) -> spaces.Box:
    return spaces.Box(np.tile(space.low, n), np.tile(space.high, n), dtype=space.dtype)


def _vector_section(space: spaces.Dict, image_keys: Sequence[str], vector_keys: Sequence[str], spec: Mapping[str, Any], net: PixelPolicyNet) -> dict:
    """The readings vector: its features in flat order, and the keys it concatenates."""
    boxes = [space[k] for k in vector_keys]
    low = np.concatenate([b.low.reshape(-1) for b in boxes]).astype(np.float64)
    high = np.concatenate([b.high.reshape(-1) for b in boxes]).astype(np.float64)
    dim = int(low.size)
    if dim != net.vector_dim:
        raise ExportError(f"the network reads a vector of {net.vector_dim} values; the env's {list(vector_keys)} give {dim}")
    features = _features(spec.get("features"), "observation", low, high) if spec.get("features") else \
        [{"name": k, "size": int(np.prod(space[k].shape)), "unit": "", "low": None, "high": None} for k in vector_keys]
    if sum(f["size"] for f in features) != dim:
        raise ExportError(f"feature_spec observation features add up to {sum(f['size'] for f in features)} values "
                          f"but the vector has {dim}")
    starts = np.cumsum([0] + [int(np.prod(space[k].shape)) for k in vector_keys]).tolist()
    layout = {"type": "pixels", "images": list(image_keys), "vector_input": VECTOR_INPUT,
              "order": list(vector_keys), "slices": {k: [starts[i], starts[i + 1]] for i, k in enumerate(vector_keys)},
              "note": f"graph inputs: one uint8 (B, H, W, C) per image key, then {VECTOR_INPUT!r}: float32 (B, dim), "
                      "the vector keys concatenated in `order`"}
    return {"dim": dim, "dtype": "float32", "features": features, "layout": layout}


def _image_section(space: spaces.Dict, image_keys: Sequence[str], described: Any, net: PixelPolicyNet) -> list[dict]:
    """One entry per image input, in graph-input order: the env's description of it, checked against the space."""
    by_key = {d.get("key"): d for d in described or [] if isinstance(d, Mapping)}
    shapes = [tuple(space[k].shape) for k in image_keys]
    if [tuple(s) for s in net.image_shapes] != shapes:
        raise ExportError(f"the network takes images of shapes {net.image_shapes}; the env's {list(image_keys)} are {shapes}")
    out = []
    for key, shape in zip(image_keys, shapes):
        if key == VECTOR_INPUT:
            raise ExportError(f"image key {key!r} is the name of the vector input; rename the camera")
        entry = by_key.get(key)
        if entry is None:
            raise ExportError(f"feature_spec observation.images does not describe image {key!r} "
                              f"(it describes {sorted(k for k in by_key if k)})")
        modality = entry.get("modality")
        if IMAGE_MODALITIES.get(modality) != shape[2] or space[key].dtype != np.uint8:
            raise ExportError(f"image {key!r}: modality {modality!r} with shape {list(shape)} and dtype {space[key].dtype}; "
                              f"expected uint8 and one of {IMAGE_MODALITIES} (modality: channels)")
        if list(entry.get("shape", shape)) != list(shape):
            raise ExportError(f"image {key!r}: feature_spec says shape {entry['shape']}, the observation space {list(shape)}")
        depth = entry.get("depth") if modality == "depth" else None
        if modality == "depth" and not (isinstance(depth, Mapping) and {"near_m", "far_m"} <= set(depth)):
            raise ExportError(f"depth image {key!r}: feature_spec gives no depth range {{near_m, far_m}}")
        extra = {k: v for k, v in entry.items() if k not in ("key", "shape", "dtype", "modality", "channel_order", "depth")}
        out.append({"key": key, "shape": list(shape), "dtype": "uint8", "modality": modality,
                    "channel_order": entry.get("channel_order", CHANNEL_ORDERS[modality]),
                    "depth": None if depth is None else dict(depth), **extra})
    return out


def _graph_inputs(samples: Mapping[str, np.ndarray] | None, space: spaces.Dict, image_keys: Sequence[str],
                  vector_keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The export check's inputs by graph input name: given samples, or random ones within the space."""
    if samples is None:
        rng = np.random.default_rng(0)
        samples = {k: rng.integers(0, 256, (EXPORT_SAMPLES, *space[k].shape), dtype=np.uint8) for k in image_keys}
        for k in vector_keys:
            low, high = np.maximum(space[k].low, -10.0), np.minimum(space[k].high, 10.0)  # unbounded readings: a few units
            samples[k] = rng.uniform(low, high, (EXPORT_SAMPLES, *space[k].shape)).astype(np.float32)
    inputs = {k: np.ascontiguousarray(samples[k], dtype=np.uint8) for k in image_keys}
    inputs[VECTOR_INPUT] = np.ascontiguousarray(
        np.concatenate([np.asarray(samples[k], np.float32).reshape(len(samples[k]), -1) for k in vector_keys], axis=1))
    return inputs
