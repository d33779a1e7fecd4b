"""A sweep's search space: a YAML file of config keys, each with a type and a range or choices.

    bc.learning_rate: {type: float, low: 0.0001, high: 0.01, log: true}
    bc.iterations:    {type: int, low: 500, high: 8000, log: true}
    bc.net_arch:      {type: categorical, choices: [[64, 64], [256, 256]]}

Keys are what `genba train --set` takes (dotted keys nest); one file per algorithm ships in
`sweep_spaces/`. A sampled point becomes config overrides on top of the cell's preset.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import yaml

from policies.config import BCConfig, ConfigError, TrainConfig
from policies.errors import PolicyError
from scenarios.naming import did_you_mean
from scenarios.yamlfile import read_yaml

SPACE_DIR = Path(__file__).resolve().parent / "sweep_spaces"
TYPES = ("float", "int", "categorical")
# Optuna stores categorical choices as plain values; a list (net_arch) travels as its YAML text.
PLAIN = (type(None), bool, int, float, str)


class SweepError(PolicyError):
    """A sweep that cannot run as asked: a bad search space, storage URL or study."""


def default_space_path(algo: str) -> Path:
    return SPACE_DIR / f"{algo}.yaml"


def load_space(path: str | Path | None, algo: str) -> dict[str, dict[str, Any]]:
    """The validated search space in `path` (default: the one shipped for `algo`)."""
    path = Path(path) if path is not None else default_space_path(algo)
    if not path.is_file():
        raise SweepError(f"search space {path}: no such file" + ("" if path.parent != SPACE_DIR else
                                                                   f" (no default space for --algo {algo}; pass --space FILE)"))
    data = read_yaml(path, SweepError, "search space")
    space = validate_space(data, str(path))
    unread = [key for key in space if key.startswith("bc.")] if algo != "bc" else []
    if unread:  # a valid key of the config, which --algo ALGO's training never reads: every trial would be the same
        raise SweepError(f"search space {path}: {', '.join(unread)} set behaviour cloning; --algo {algo} does not read "
                         f"them (sweep --algo bc, or a space of {algo}'s keys such as {default_space_path(algo)})")
    return space


def validate_space(data: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not data:
        raise SweepError(f"search space {source}: expected a mapping of config keys to {{type, low, high}} or {{type, choices}}")
    for key, spec in data.items():
        where = f"search space {source}: {key}"
        _check_key(str(key), where)
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            got = spec.get("type") if isinstance(spec, dict) else spec
            raise SweepError(f"{where}: type must be one of {', '.join(TYPES)}, got {got!r}"
                             + (did_you_mean(str(got), TYPES) if isinstance(got, str) else ""))
        allowed = {"type", "choices"} if spec["type"] == "categorical" else {"type", "low", "high", "log", "step"}
        extra = set(spec) - allowed
        if extra:
            raise SweepError(f"{where}: unknown field(s) {', '.join(sorted(extra))}; a {spec['type']} takes {', '.join(sorted(allowed))}")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise SweepError(f"{where}: categorical needs a non-empty list of choices")
            continue
        number = int if spec["type"] == "int" else (int, float)
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, number) or not isinstance(high, number) or isinstance(low, bool) or isinstance(high, bool):
            raise SweepError(f"{where}: {spec['type']} needs numeric low and high, got low={low!r} high={high!r}")
        if not (math.isfinite(low) and math.isfinite(high)):
            raise SweepError(f"{where}: low and high must be finite, got low={low!r} high={high!r}")
        if low > high:
            raise SweepError(f"{where}: low {low} is above high {high}")
        if "log" in spec and not isinstance(spec["log"], bool):
            raise SweepError(f"{where}: log must be true or false, got {spec['log']!r}")
        if spec.get("log") and low <= 0:
            raise SweepError(f"{where}: log scale needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None:  # Optuna's rules, checked here rather than in every trial (each failed, then the workers)
            if not isinstance(step, number) or isinstance(step, bool) or not math.isfinite(step) or step <= 0:
                raise SweepError(f"{where}: step must be a number > 0, got {step!r}")
            if spec.get("log"):
                raise SweepError(f"{where}: step and log scale do not go together (Optuna)")
    return data


def check_points(space: dict[str, dict[str, Any]], source: str, resolve: Callable[[dict[str, Any]], Any]) -> None:
    """Each choice, and each end of each range, makes a valid training config (`resolve(overrides)` raises ConfigError
    otherwise): a batch_size of "abc" or 0 used to fail in every trial, and the sweep ended 'workers keep dying'."""
    for key, spec in space.items():
        for value in spec["choices"] if spec["type"] == "categorical" else (spec["low"], spec["high"]):
            overrides: dict[str, Any] = {}
            set_nested(overrides, key, value)
            try:
                resolve(overrides)
            except ConfigError as exc:
                raise SweepError(f"search space {source}: {key} = {value!r} makes a config that cannot train: {exc}") from None


def _check_key(key: str, where: str) -> None:
    """Only keys a TrainConfig has: a typo must fail before any trial trains on the preset's value."""
    head, _, rest = key.partition(".")
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    if head not in top:
        raise SweepError(f"{where}: unknown config key {head!r}{did_you_mean(head, top)}")
    if head == "bc":
        names = [f.name for f in dataclasses.fields(BCConfig)]
        if rest.split(".")[0] not in names:
            raise SweepError(f"{where}: unknown bc key {rest!r}{did_you_mean(rest, names)}")
    elif rest and head not in ("hyperparams", "her_kwargs"):
        raise SweepError(f"{where}: {head} has no sub-keys")


def encode_choice(value: Any) -> Any:
    return value if isinstance(value, PLAIN) else yaml.safe_dump(value, default_flow_style=True).strip()


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sample one point with the trial's sampler; returns nested config overrides."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            value = trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log")), step=spec.get("step"))
        elif spec["type"] == "int":
            value = trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log")), step=spec.get("step") or 1)
        else:
            choices = [encode_choice(c) for c in spec["choices"]]
            value = trial.suggest_categorical(key, choices)
            if not isinstance(spec["choices"][choices.index(value)], PLAIN):
                value = yaml.safe_load(value)
        set_nested(out, key, value)
    return out


def set_nested(out: dict[str, Any], key: str, value: Any) -> None:
    node = out
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
