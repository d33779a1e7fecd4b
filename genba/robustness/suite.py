"""A robustness suite: which perturbations a bundle is tested under, at what magnitudes, and the rows that gives.

A suite (YAML; shipped ones in genba/robustness/suites/) takes its factors' default (1x) magnitudes from a
randomisation profile (scenarios/profiles/, or inline), groups profile keys into named factors, and may
add bridge faults (genba.twin Faults fields) for runs through the twin:

    name: shop-floor
    profile: shop-floor               # or `randomization: {dynamics: {...}, sensing: {...}, visuals: {...}}`
    magnitudes: [1, 2]                # each factor alone at these multiples of its default magnitude
    factors:                          # optional; default: one factor per profile key
      part dynamics: [dynamics.part_mass_scale, dynamics.part_friction_scale]
    bridge:
      latency: {latency_ms: 5.0}

A magnitude multiplies each value's deviation from nominal: a `*_scale` factor's nominal is 1 (the
range [0.8, 1.2] at 2x is [0.6, 1.4]), every other factor's is 0 (noise std, delays, jitter, rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genba.errors import AppError
from genba.twin.config import Faults, TwinError
from scenarios import ScenarioError, load_scenario
from scenarios.naming import did_you_mean
from scenarios.randomization import SECTIONS, load_profile, with_randomization
from scenarios.schema import RandomizationConfig
from scenarios.yamlfile import read_yaml

SUITE_DIR = Path(__file__).parent / "suites"
FAULT_FIELDS = ("latency_ms", "jitter_ms", "drop_rate", "random_delay_ms")


class SuiteError(AppError):
    """A suite file that cannot be used: missing, malformed, or naming factors its profile lacks."""


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    profile: Optional[str] = Field(None, description="randomisation profile: a shipped name or a YAML path")
    randomization: Optional[dict[str, Any]] = Field(None, description="inline profile: dynamics / sensing / visuals")
    magnitudes: tuple[float, ...] = Field((1.0, 2.0), min_length=1)
    factors: Optional[dict[str, list[str]]] = None
    bridge: dict[str, dict[str, float]] = {}

    @field_validator("magnitudes")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(m <= 0 for m in v):
            raise ValueError(f"magnitudes must be > 0, got {list(v)}")
        return v

    @field_validator("bridge")
    @classmethod
    def _faults(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, faults in v.items():
            unknown = sorted(set(faults) - set(FAULT_FIELDS))
            if unknown:
                raise ValueError(f"bridge factor {name!r}: unknown fault {unknown[0]!r}; faults: {', '.join(FAULT_FIELDS)}"
                                 + did_you_mean(unknown[0], FAULT_FIELDS))
        return v


@dataclass(frozen=True)
class Row:
    """One evaluation: a label, what it perturbs and how much (empty for nominal)."""

    label: str
    factor: str  # "nominal", a factor's name, "all factors", "bridge faults" or "all + bridge"
    magnitude: float  # 0 for nominal
    randomization: dict[str, Any] = field(default_factory=dict)  # dynamics / sensing / visuals overlay, {} for none
    faults: dict[str, float] = field(default_factory=dict)  # Faults fields

    @property
    def nominal(self) -> bool:
        return not self.randomization

    def overlay(self) -> dict[str, Any]:
        """The row as a complete `randomization` overlay: every factor it does not set is null (off), so a factor
        runs alone even on a scenario that declares factors of its own (an overlay merges key by key)."""
        overlay: dict[str, Any] = {}
        for section in SECTIONS:
            factors = self.randomization.get(section)
            model = RandomizationConfig.model_fields[section].annotation.__args__[0]  # Optional[XRandomization]
            overlay[section] = None if factors is None else {**dict.fromkeys(model.model_fields), **factors}
        return overlay


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    profile: dict[str, dict[str, Any]]  # section -> factor key -> value at 1x
    factors: dict[str, list[str]]  # factor name -> "section.key" it perturbs
    magnitudes: tuple[float, ...]
    bridge: dict[str, dict[str, float]]

    def rows(self, through_bridge: bool = False) -> list[Row]:
        """Nominal, each factor alone at each magnitude, all together at 1x; through the bridge, its faults too."""
        rows = [Row("nominal", "nominal", 0.0)]
        for name, keys in self.factors.items():
            for k in self.magnitudes:
                rows.append(Row(f"{name} x{k:g}", name, k, self._overlay(keys, k)))
        everything = [key for keys in self.factors.values() for key in keys]
        if everything:
            rows.append(Row("all factors x1", "all factors", 1.0, self._overlay(everything, 1.0)))
        if not through_bridge or not self.bridge:
            return rows
        for name, faults in self.bridge.items():
            for k in self.magnitudes:
                rows.append(Row(f"{name} x{k:g}", name, k, faults=scale_faults(faults, k)))
        combined = {f: v for faults in self.bridge.values() for f, v in faults.items()}
        rows.append(Row("bridge faults x1", "bridge faults", 1.0, faults=combined))
        if everything:
            rows.append(Row("all + bridge x1", "all + bridge", 1.0, self._overlay(everything, 1.0), combined))
        return rows

    def _overlay(self, keys: list[str], k: float) -> dict[str, Any]:
        overlay: dict[str, dict[str, Any]] = {}
        for key in keys:
            section, name = key.split(".", 1)
            overlay.setdefault(section, {})[name] = scale_magnitude(name, self.profile[section][name], k)
        return overlay


def scale_magnitude(name: str, value: Any, k: float) -> Any:
    """`value` of factor `name` at k times its default magnitude (module docstring); whole numbers stay whole."""
    if isinstance(value, dict):  # per-feature noise: each std scales
        return {key: scale_magnitude(name, v, k) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scale_magnitude(name, v, k) for v in value]
    nominal = 1.0 if name.endswith("_scale") else 0.0
    scaled = nominal + k * (value - nominal)
    return int(round(scaled)) if isinstance(value, int) and not isinstance(value, bool) else scaled


def scale_faults(faults: dict[str, float], k: float) -> dict[str, float]:
    return {name: value * k for name, value in faults.items()}


def suite_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = SUITE_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))
        raise SuiteError(f"no robustness suite {str(name_or_path)!r}; shipped: {', '.join(names)}, or give a YAML path"
                         + did_you_mean(name_or_path, names))
    return shipped


def load_suite(name_or_path: str | Path, scenario: str | None = None, magnitudes: tuple[float, ...] | None = None) -> Suite:
    """A suite by shipped name or path (`magnitudes` in place of its own), checked: every factor's key exists in its
    profile and, with `scenario`, every row's overlay (at every magnitude) validates on that scenario, so a bad range
    fails before any episode runs."""
    path = suite_path(name_or_path)
    raw = read_yaml(path, SuiteError, "robustness suite")
    try:
        spec = _SuiteFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise SuiteError(f"{path}: {where}: {err['msg']}") from None
    if (spec.profile is None) == (spec.randomization is None):
        raise SuiteError(f"{path}: give exactly one of `profile` (a name or path) and `randomization` (inline)")
    try:
        profile = load_profile(spec.profile) if spec.profile is not None else spec.randomization
    except ScenarioError as exc:
        raise SuiteError(f"{path}: profile: {exc}") from None
    unknown = sorted(set(profile) - set(SECTIONS))
    if unknown:
        raise SuiteError(f"{path}: profile section {unknown[0]!r} is not a domain randomisation section "
                         f"({', '.join(SECTIONS)})")
    keys = [f"{section}.{name}" for section, factors in profile.items() for name in (factors or {})]
    factors = spec.factors if spec.factors is not None else {key: [key] for key in keys}
    for name, members in factors.items():
        for key in members:
            if key not in keys:
                raise SuiteError(f"{path}: factor {name!r} names {key!r}, which its profile does not declare; "
                                 f"declared: {', '.join(keys)}" + did_you_mean(key, keys))
    suite = Suite(spec.name, spec.description, {s: dict(f or {}) for s, f in profile.items()}, factors,
                  magnitudes or spec.magnitudes, spec.bridge)
    for row in suite.rows(through_bridge=True):  # every magnitude now, not when the row's turn comes
        try:
            Faults(**row.faults)
        except TwinError as exc:
            raise SuiteError(f"{path}: row {row.label!r}: {exc}") from None
    if scenario is not None:
        check_rows(suite, scenario, path)
    return suite


def check_rows(suite: Suite, scenario: str, where: Path) -> None:
    spec = load_scenario(scenario)
    for row in suite.rows(through_bridge=True):
        try:
            with_randomization(spec, row.overlay())
        except ScenarioError as exc:
            raise SuiteError(f"{where}: row {row.label!r} is not a valid randomisation of {spec.name}: {exc}") from None
