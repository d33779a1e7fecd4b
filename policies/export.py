"""Write a policy bundle: policy.onnx + policy.pt (TorchScript) + manifest.json.

`export_bundle` works on any supported SB3 model, trained or freshly initialised, with or without a
run directory, so tests and other packages can build small real bundles. See docs/bundle-format.md.
"""

from __future__ import annotations

import copy
import io
import json
import math
import platform
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnxruntime as ort
import torch

from bridge.spec import spec_hash
from policies.bundle_format import (
    FORMAT,
    MANIFEST_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    TORCHSCRIPT_IO,
    VECTOR_FORMAT_VERSION,
    sha256_file,
)
from policies.features import ACTION_MEANINGS, DICT_OBS_ORDER, json_bound
from policies.graph import ExportError, ObsLayout, PolicyGraph
from policies.residual import ResidualGraph
from policies.rundir import atomic_dir
from scenarios import Scenario, load_scenario, scenario_hash

ONNX_OPSET = 17
# The exported graphs must reproduce the live model to this tolerance, or the export is refused.
EXPORT_TOLERANCE = 1e-5
ROBOT_KEYS = ("model", "joint_names", "joint_lower", "joint_upper", "joint_max_velocity", "max_ee_speed",
              "workspace_low", "workspace_high")


def export_bundle(
    model,
    out_dir: str | Path,
    *,
    feature_spec: Mapping[str, Any] | None,
    scenario: Any = None,
    training: Mapping[str, Any] | None = None,
    vecnormalize=None,
    name: str | None = None,
    overwrite: bool = False,
    chunk_length: int = 1,
    residual_of: tuple[Any, Any, Sequence[float], int | None] | None = None,
) -> Path:
    """Export `model` (SB3 PPO/A2C/SAC/TQC/TD3/DDPG) as a bundle directory and return its path.

    feature_spec: `env.unwrapped.feature_spec()` (names, units, bounds, action kind, control rate, robot);
        None derives plain features from the model's spaces.
    scenario: a `scenarios.Scenario`, a scenario name/path, a {"name", "sha256"} dict, or None.
    vecnormalize: the VecNormalize the model was trained behind; its observation statistics are folded in.
    chunk_length: actions per observation the model outputs (its action space is chunk_length actions
        of the env's, flat); the manifest's action section describes one action, ``chunk`` the chunk.
    residual_of: (base model, its VecNormalize, scale per action value, how many leading observation values the base
        sees or None for all) when `model` is a correction learnt on top of a frozen base (policies.residual): the
        graph computes clip(base + scale * model, low, high).
    The directory appears complete or not at all (written beside it, then renamed).
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    torch.set_num_threads(1)
    graph = PolicyGraph(_cpu_model(model), vecnormalize).eval()
    algo = type(model).__name__.lower()
    if residual_of is not None:
        base_model, base_vecnormalize, scale, base_obs = residual_of
        graph = ResidualGraph(PolicyGraph(_cpu_model(base_model), base_vecnormalize), graph, np.asarray(scale), base_obs).eval()
        algo = f"{type(base_model).__name__.lower()} + {algo} residual"
    feature_spec = dict(feature_spec or {})
    observation = _observation_section(graph.layout, model.observation_space, feature_spec.get("observation"))
    action = _action_section(_one_action_space(model.action_space, chunk_length), feature_spec.get("action"))
    sample = _sample_observations(model.observation_space, graph.layout, n=64)
    policy = {"algo": algo, "input": "obs", "output": "action", "onnx_opset": ONNX_OPSET, **graph.describe()}
    return write_bundle(out_dir, lambda tmp: _write_graphs(graph, tmp, sample), format_version=VECTOR_FORMAT_VERSION,
                        name=name, observation=observation, action=action, feature_spec=feature_spec, chunk_length=chunk_length,
                        scenario=scenario, policy=policy, training=training)


def refuse_existing(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output that is a file or a non-empty directory; `overwrite` (--force) replaces only a bundle: an --out
    naming the run itself, or a folder of runs, would otherwise be deleted whole."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a bundle directory; choose another -o")
    present = {p.name for p in out_dir.iterdir()}
    if present and not overwrite:
        raise ExportError(f"{out_dir} already exists and is not empty; choose another -o or pass --force")
    others = sorted(present - {MANIFEST_FILE, ONNX_FILE, TORCHSCRIPT_FILE})
    if present and (MANIFEST_FILE not in present or others):
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ExportError(f"{out_dir} is not a bundle directory (it holds {shown or 'no ' + MANIFEST_FILE}); --force replaces "
                          "only a bundle: choose another -o")


def write_bundle(out_dir: Path, write_graphs: Callable[[Path], dict], *, format_version: int, name: str | None,
                 observation: dict, action: dict, feature_spec: Mapping[str, Any], chunk_length: int, scenario: Any,
                 policy: dict, training: Mapping[str, Any] | None) -> Path:
    """The bundle directory: graphs that `write_graphs(dir)` writes (returning its export check), and the manifest.

    The directory appears complete or not at all (written beside it, then renamed).
    """
    hz = _float_or_none(feature_spec.get("control_hz"))
    if chunk_length > 1 and hz is None:
        raise ExportError(f"a chunked policy (chunk_length {chunk_length}) needs the control rate: its actions are one "
                          "control period apart; give feature_spec control_hz")
    # atomic_dir: an old bundle (--force) is renamed aside before the new one is renamed in, and removed after it;
    # removing it first left no bundle, or half of one, to a crash in between.
    with atomic_dir(out_dir) as tmp:
        check = write_graphs(tmp)
        files = {f: sha256_file(tmp / f) for f in (ONNX_FILE, TORCHSCRIPT_FILE)}
        manifest = {
            "format": FORMAT,
            "format_version": format_version,
            "name": name or out_dir.name,
            "observation": observation,
            "action": action,
            "spec_hash": spec_hash(observation, action, hz),
            "control_hz": hz,
            "chunk": {"length": int(chunk_length), "period_s": None if hz is None else 1.0 / hz},
            "robot": _robot_section(feature_spec.get("robot")),
            "scenario": _scenario_section(scenario if scenario is not None else feature_spec.get("scenario")),
            "policy": {**policy, "export_check": check},
            "training": dict(training or {}),
            "versions": _versions(),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return out_dir


def _one_action_space(space, chunk_length: int):
    """The space of one action of a model whose action is chunk_length actions, flat."""
    if type(chunk_length) is not int or chunk_length < 1:
        raise ExportError(f"chunk_length must be an integer >= 1, got {chunk_length!r}")
    if chunk_length == 1:
        return space
    width = int(np.prod(space.shape))
    if width % chunk_length:
        raise ExportError(f"the model acts with {width} values, not a whole number of chunk_length {chunk_length} actions")
    dim = width // chunk_length
    low, high = space.low.reshape(chunk_length, dim), space.high.reshape(chunk_length, dim)
    if not (np.all(low == low[0]) and np.all(high == high[0])):
        raise ExportError("the actions of a chunk must share one action space (bounds differ between rows)")
    return type(space)(low[0], high[0], (dim,), dtype=space.dtype)


def _cpu_model(model):
    """A CPU copy of the model's policy holder (the live model keeps its device)."""
    clone = copy.copy(model)
    clone.policy = copy.deepcopy(model.policy).to("cpu").eval()
    return clone


def write_graphs(graph: torch.nn.Module, out: Path, inputs: Mapping[str, np.ndarray], io_info: Mapping[str, Any],
                 observations: str) -> dict[str, Any]:
    """Write ONNX and TorchScript of graph(*inputs) (named inputs, output "action", dynamic batch), then prove
    both reproduce the torch graph on `inputs` (`observations`: what they are, for the check's record). io_info
    goes into policy.pt: a trace has no declared inputs."""
    names = list(inputs)
    xs = tuple(torch.as_tensor(v) for v in inputs.values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notices
        expected = graph(*xs).numpy()
        buf = io.BytesIO()
        torch.onnx.export(graph, xs, buf, dynamo=False, opset_version=ONNX_OPSET, input_names=names, output_names=["action"],
                          dynamic_axes={name: {0: "batch"} for name in names + ["action"]})
        (out / ONNX_FILE).write_bytes(buf.getvalue())
        traced = torch.jit.trace(graph, xs, check_trace=False)
        torch.jit.save(traced, str(out / TORCHSCRIPT_FILE), _extra_files={TORCHSCRIPT_IO: json.dumps(dict(io_info))})

    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    got_onnx = session.run(["action"], dict(inputs))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got_ts = torch.jit.load(str(out / TORCHSCRIPT_FILE))(*xs).detach().numpy()
    check = {"samples": int(len(xs[0])), "observations": observations,
             "max_abs_diff_onnx": float(np.max(np.abs(got_onnx - expected))),
             "max_abs_diff_torchscript": float(np.max(np.abs(got_ts - expected)))}
    worst = max(check["max_abs_diff_onnx"], check["max_abs_diff_torchscript"])
    if not worst <= EXPORT_TOLERANCE:
        raise ExportError(f"exported graph differs from the model by {worst:.3g} (> {EXPORT_TOLERANCE}); refusing to write the bundle")
    return check


def _write_graphs(graph: PolicyGraph, out: Path, sample: np.ndarray) -> dict[str, Any]:
    # A traced graph may silently accept extra columns; the loader checks these recorded sizes instead.
    io_sizes = {"obs_dim": graph.layout.dim, "act_dim": int(graph.act_low.numel())}
    return write_graphs(graph, out, {"obs": sample}, io_sizes, f"{len(sample)} spread over the observation space")


def _sample_observations(space, layout: ObsLayout, n: int) -> np.ndarray:
    """Observations spread over the space (standard normal where unbounded), for the export self-check."""
    rng = np.random.default_rng(0)
    boxes = [space] if layout.keys is None else [space.spaces[k] for k in layout.keys]
    cols = []
    for box in boxes:
        low, high = box.low.reshape(-1).astype(np.float64), box.high.reshape(-1).astype(np.float64)
        finite = np.isfinite(low) & np.isfinite(high)
        col = rng.standard_normal((n, low.size))
        col[:, finite] = rng.uniform(low[finite], high[finite], size=(n, int(finite.sum())))
        cols.append(col)
    return np.concatenate(cols, axis=1).astype(np.float32)


def _features(items: Any, where: str, low: np.ndarray, high: np.ndarray) -> list[dict]:
    """Normalise a feature list ([{name, size|shape, unit, low, high, ...}] or {name: {...}}) for the manifest.

    Bounds a feature does not state come from the space (`low`/`high`, flat, in feature order);
    other fields the env gives (e.g. an action's `scale`) are kept.
    """
    if isinstance(items, Mapping) and "features" in items:
        items = items["features"]
    if isinstance(items, Mapping):
        items = [{"name": k, **dict(v)} for k, v in items.items()]
    out, start = [], 0
    for i, item in enumerate(items or []):
        if "name" not in item:
            raise ExportError(f"feature_spec {where}[{i}] has no 'name'")
        shape = item.get("shape")
        size = int(item["size"]) if "size" in item else int(np.prod(shape)) if shape is not None else 1
        lo = item["low"] if item.get("low") is not None else low[start:start + size]
        hi = item["high"] if item.get("high") is not None else high[start:start + size]
        if np.size(lo) not in (1, size) or np.size(hi) not in (1, size):
            raise ExportError(f"feature_spec {where}[{i}] ({item['name']!r}): low/high do not have {size} values")
        extra = {k: _jsonable(v) for k, v in item.items() if k not in ("name", "size", "shape", "unit", "low", "high")}
        out.append({"name": str(item["name"]), "size": size, "unit": str(item.get("unit", "")),
                    "low": json_bound(lo, size), "high": json_bound(hi, size), **extra})
        start += size
    return out


def _bounds(space) -> tuple[np.ndarray, np.ndarray]:
    return space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)


def _space_features(space, name: str) -> list[dict]:
    low, high = _bounds(space)
    return [{"name": name, "size": low.size, "unit": "", "low": json_bound(low, low.size), "high": json_bound(high, high.size)}]


def _observation_section(layout: ObsLayout, space, spec: Any) -> dict:
    """Features in flat order. The spec may list them flat (Dict keys already concatenated) or per Dict key."""
    boxes = [space] if layout.keys is None else [space.spaces[k] for k in layout.keys]
    low = np.concatenate([_bounds(b)[0] for b in boxes])
    high = np.concatenate([_bounds(b)[1] for b in boxes])
    per_key = spec if layout.keys and isinstance(spec, Mapping) and set(layout.keys) <= set(spec) else None
    if per_key is not None:
        features, start = [], 0
        for key, size in zip(layout.keys, layout.sizes):
            feats = _features(per_key[key], f"observation.{key}", low[start:start + size], high[start:start + size])
            features += [{**f, "name": f["name"] if f["name"].startswith(f"{key}.") else f"{key}.{f['name']}"} for f in feats]
            start += size
    elif spec:
        features = _features(spec, "observation", low, high)
    else:
        features = [f for key, box in zip(layout.keys or ("obs",), boxes) for f in _space_features(box, key)]
    total = sum(f["size"] for f in features)
    if total != layout.dim:
        raise ExportError(f"feature_spec observation features add up to {total} values but the model observes {layout.dim}")
    if layout.keys is None:
        layout_desc: dict = {"type": "flat"}
    else:
        starts = np.cumsum((0,) + layout.sizes).tolist()
        layout_desc = {"type": "dict", "order": list(layout.keys),
                       "slices": {k: [starts[i], starts[i + 1]] for i, k in enumerate(layout.keys)},
                       "note": f"Dict observations are flattened by concatenating keys in the order {list(DICT_OBS_ORDER)}"}
    return {"dim": layout.dim, "dtype": "float32", "features": features, "layout": layout_desc}


def _action_section(space, spec: Any) -> dict:
    spec = dict(spec or {}) if isinstance(spec, Mapping) else {"features": spec}
    dim = int(np.prod(space.shape))
    low, high = _bounds(space)
    features = _features(spec["features"], "action", low, high) if spec.get("features") else _space_features(space, "action")
    if sum(f["size"] for f in features) != dim:
        raise ExportError(f"feature_spec action features add up to {sum(f['size'] for f in features)} values but the model acts with {dim}")
    kind = str(spec.get("kind", "absolute"))
    return {"dim": dim, "dtype": "float32", "kind": kind, "low": json_bound(space.low.reshape(-1), dim),
            "high": json_bound(space.high.reshape(-1), dim), "features": features,
            "meaning": str(spec.get("meaning") or ACTION_MEANINGS.get(kind, ACTION_MEANINGS["absolute"]))}


def _robot_section(robot: Any) -> dict:
    robot = dict(robot or {})
    return {k: _jsonable(robot.get(k)) for k in ROBOT_KEYS} | {k: _jsonable(v) for k, v in robot.items() if k not in ROBOT_KEYS}


def _scenario_section(scenario: Any) -> dict:
    if scenario is None:
        return {"name": None, "sha256": None}
    if isinstance(scenario, Mapping):
        return {"name": scenario.get("name"), "sha256": scenario.get("sha256")}
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    return {"name": scenario.name, "sha256": scenario_hash(scenario)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("genba", "numpy", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
