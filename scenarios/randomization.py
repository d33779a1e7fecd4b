"""Domain-randomisation profiles: a `randomization:` section kept apart from the cell, merged over a scenario.

A profile is a YAML mapping shaped like a scenario's `randomization:` section (usually just its
dynamics / sensing / visuals sections). `with_randomization` deep-merges one over a scenario's own
section and re-validates the whole scenario, so a bad factor is reported with its key path. A `null`
in the overlay turns a section (or factor) off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from scenarios.loader import ScenarioError, names_a_file, parse_scenario
from scenarios.naming import did_you_mean
from scenarios.schema import Scenario
from scenarios.yamlfile import read_yaml

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
# The domain-randomisation sections; the play switch turns all of them off.
SECTIONS = ("dynamics", "sensing", "visuals")

Overlay = Mapping[str, Any] | str | Path


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """A shipped profile by name (`shop-floor`) or a YAML file, as a dict (validated when merged)."""
    text = str(name_or_path)
    if names_a_file(text):
        path = Path(text)
        if not path.is_file():
            raise ScenarioError(f"{path}: no such randomisation profile file")
    else:
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.is_file():
            names = profile_names()
            raise ScenarioError(f"unknown randomisation profile {text!r}; shipped: {', '.join(names)}" + did_you_mean(text, names))
    data = read_yaml(path, ScenarioError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a randomisation profile is a mapping (dynamics, sensing, visuals...), got {type(data).__name__}")
    return data


def with_randomization(spec: Scenario, overlay: Overlay | None) -> Scenario:
    """`spec` with `overlay` (a dict, a profile name or a YAML path) deep-merged over its `randomization` section."""
    if overlay is None:
        return spec
    source = "randomization overlay"
    if isinstance(overlay, (str, Path)):
        source = f"randomization profile {overlay}"
        overlay = load_profile(overlay)
    if not isinstance(overlay, Mapping):
        raise ScenarioError(f"{source}: must be a mapping (dynamics, sensing, visuals...), got {type(overlay).__name__}")
    data = spec.model_dump()
    data["randomization"] = _deep_merge(data["randomization"], overlay)
    return parse_scenario(data, source=f"{source} over scenario {spec.name!r}")


def merge_overlays(base: Overlay | None, over: Overlay | None) -> Overlay | None:
    """One overlay: `over` deep-merged over `base` (each a dict, a profile name or a YAML path; None: nothing)."""
    if base is None or over is None:
        return over if base is None else base
    as_dict = lambda o: o if isinstance(o, Mapping) else load_profile(o)  # noqa: E731
    return _deep_merge(as_dict(base), as_dict(over))


def without_domain_randomization(spec: Scenario) -> Scenario:
    """The play switch: every dynamics / sensing / visuals factor off; the task's own draws unchanged."""
    if all(getattr(spec.randomization, s) is None for s in SECTIONS):
        return spec
    return spec.model_copy(update={"randomization": spec.randomization.model_copy(update=dict.fromkeys(SECTIONS))})


def _deep_merge(base: Any, overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in overlay.items():
        out[key] = _deep_merge(out.get(key), value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out
