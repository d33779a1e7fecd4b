"""A pixel bundle's inputs (format 3): camera images, uint8 (B, H, W, C), one graph input per image key,
and the robot's readings, float32 (B, obs_dim), graph input "vector". numpy only, like policies.bundle.

`split_observation` turns an observation dict into those arrays, refusing what the graph must not see;
`check_graph_inputs` compares what a loaded graph takes with the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from policies.bundle_format import VECTOR_INPUT, BundleError
from policies.features import flatten_obs

_UINT8 = np.dtype(np.uint8)


@dataclass(frozen=True)
class ImageInput:
    """One camera image a pixel bundle takes: graph input `key`, uint8 (B, *shape)."""

    key: str
    shape: tuple[int, int, int]  # (H, W, C)
    dtype: str  # "uint8"
    modality: str  # "rgb" | "depth"
    description: Mapping[str, Any]  # the manifest entry: channel order, depth range, intrinsics, camera pose, meaning

    @staticmethod
    def of(entry: Mapping[str, Any]) -> "ImageInput":
        return ImageInput(str(entry["key"]), tuple(int(v) for v in entry["shape"]), str(entry["dtype"]),
                          str(entry.get("modality")), entry)


def split_observation(bundle: str, images: Sequence[ImageInput], order: Sequence[str], obs_dim: int,
                      obs: Any) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
    """(vector (B, obs_dim) float32, {key: uint8 (B, H, W, C)}, single) from one observation dict or a batch of them.

    Images are taken as they are (uint8, never converted: a float image is a caller's bug); the vector keys
    are concatenated in `order`. Raises BundleError naming the bundle and the key for a missing key, a wrong
    dtype or shape, batches of different sizes, or a non-finite reading.
    """
    if not isinstance(obs, Mapping):
        raise BundleError(f"bundle {bundle!r} takes camera images: give act() an observation dict with image keys "
                          f"{[i.key for i in images]} and vector keys {list(order)}, not {type(obs).__name__}")
    arrays = {}
    for image in images:
        if image.key not in obs:
            raise BundleError(f"bundle {bundle!r}: the observation has no image {image.key!r} (it has {sorted(obs)})")
        arr = obs[image.key]
        if not isinstance(arr, np.ndarray) or arr.dtype != _UINT8:
            raise BundleError(f"bundle {bundle!r}: image {image.key!r} must be a uint8 array, got "
                              f"{getattr(arr, 'dtype', type(arr).__name__)}")
        if arr.shape[-3:] != image.shape or arr.ndim not in (3, 4):
            raise BundleError(f"bundle {bundle!r}: image {image.key!r} must be {image.shape} or (B, *{image.shape}), got {arr.shape}")
        arrays[image.key] = arr
    if len({a.shape[:-3] for a in arrays.values()}) != 1:
        raise BundleError(f"bundle {bundle!r}: images of different batch sizes {[a.shape for a in arrays.values()]}")
    first = next(iter(arrays.values()))
    single = first.ndim == 3
    missing = [k for k in order if k not in obs]
    if missing:
        raise BundleError(f"bundle {bundle!r}: the observation has no {missing} (the readings vector is {list(order)})")
    x = flatten_obs(obs, tuple(order))
    want = (obs_dim,) if single else (len(first), obs_dim)
    if x.shape != want:
        raise BundleError(f"bundle {bundle!r}: the vector {list(order)} must be {want} with these images, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise BundleError(f"bundle {bundle!r} got a non-finite reading (NaN or inf) in {list(order)}; refusing to act on it")
    arrays = {k: np.ascontiguousarray(a[None] if single else a) for k, a in arrays.items()}
    return np.ascontiguousarray(x[None] if single else x, dtype=np.float32), arrays, single


def zero_inputs(images: Sequence[ImageInput], obs_dim: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One all-zero observation: what the loader runs the graph on once."""
    return np.zeros((1, obs_dim), np.float32), {i.key: np.zeros((1, *i.shape), np.uint8) for i in images}


def check_graph_inputs(where: str, images: Sequence[ImageInput], obs_dim: int, inputs: Sequence[Mapping[str, Any]] | None) -> None:
    """The graph's declared inputs ([{name, shape (no batch), dtype}]) must be the manifest's images and the vector."""
    if inputs is None:
        raise BundleError(f"{where} does not declare its inputs; re-export the bundle")
    expected = {i.key: (list(i.shape), "uint8") for i in images} | {VECTOR_INPUT: ([obs_dim], "float32")}
    found = {str(i.get("name")): (list(i.get("shape") or []), str(i.get("dtype"))) for i in inputs}
    if set(found) != set(expected):
        raise BundleError(f"{where} takes inputs {sorted(found)}; the manifest describes {sorted(expected)}")
    for name, (shape, dtype) in expected.items():
        if found[name] != (shape, dtype):
            raise BundleError(f"{where} takes input {name!r} as {dtype_shape(*found[name])}; the manifest says {dtype_shape(shape, dtype)}")


def dtype_shape(shape: Sequence[Any], dtype: str) -> str:
    return f"{dtype} (B, {', '.join(str(v) for v in shape)})"
