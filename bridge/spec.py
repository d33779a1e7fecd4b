"""The spec hash: what a controller and a bundle must agree on before the first step.

A bundle's ``spec_hash`` is the sha256 of a short text listing the observation features, the
action kind and features and the control rate (docs/bridge-protocol.md, "Spec hash"). The text is
made of names, integers and numbers printed as C's ``printf("%.9g")`` prints them, so a controller
written in any language can build it from its own description of the cell and compare hashes; no
JSON, no float-to-text round trips that differ between libraries.

Controller side: stdlib only.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import operator
from typing import Any, Mapping, Sequence

from bridge.errors import BridgeError

SPEC_TEXT_HEADER = "genba-spec 1"
NONE = "-"  # written for an empty unit, an absent scale, an unknown control rate


class SpecError(BridgeError):
    """A feature description that cannot be written into the spec text (bad name, size, unit or number)."""


def spec_text(observation: Mapping[str, Any] | Sequence[Mapping[str, Any]], action: Mapping[str, Any],
              control_hz: float | None) -> str:
    """The text whose sha256 is the spec hash (lines joined by newlines, one trailing newline).

    observation: a mapping with "features" (a manifest's "observation" section), or the feature
        list itself; each feature a mapping with "name", "size" and "unit" (other keys ignored).
    action: a mapping with "kind" and "features" (features may also carry "scale").
    control_hz: the policy rate, or None where it is unknown (toy envs): written "-".
    """
    obs_features = _feature_list(observation, "observation")
    if not isinstance(action, Mapping):
        raise SpecError(f"action must be a mapping with 'kind' and 'features', got {type(action).__name__}")
    act_features = _feature_list(action, "action")
    kind = _word(action.get("kind"), "action kind", allow_empty=False)
    lines = [SPEC_TEXT_HEADER, f"control_hz {_rate(control_hz)}"]
    obs_lines = [_feature_line(f, "observation", i, with_scale=False) for i, f in enumerate(obs_features)]
    act_lines = [_feature_line(f, "action", i, with_scale=True) for i, f in enumerate(act_features)]
    lines.append(f"observation {sum(size for size, _ in obs_lines)}")
    lines += [line for _, line in obs_lines]
    lines.append(f"action {kind} {sum(size for size, _ in act_lines)}")
    lines += [line for _, line in act_lines]
    return "\n".join(lines) + "\n"


def spec_hash(observation: Mapping[str, Any] | Sequence[Mapping[str, Any]], action: Mapping[str, Any],
              control_hz: float | None) -> str:
    """sha256 hex (64 lowercase digits) of ``spec_text`` encoded as UTF-8."""
    return hashlib.sha256(spec_text(observation, action, control_hz).encode("utf-8")).hexdigest()


def format_number(value: Any, what: str) -> str:
    """A finite number as C's printf("%.9g") writes it (ints too: 3 -> "3", 1e10 -> "1e+10")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{what} must be finite, got {value!r}")
    return format(value, ".9g")


def _feature_list(section: Any, where: str) -> list:
    features = section.get("features") if isinstance(section, Mapping) else section
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise SpecError(f"{where} must be a mapping with a 'features' list (or the list itself), got {type(section).__name__}")
    return list(features)


def _word(value: Any, what: str, allow_empty: bool) -> str:
    """A name, unit or kind: one token of printable characters (no whitespace)."""
    if value is None and allow_empty:
        return NONE
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string, got {value!r}")
    if not value:
        if allow_empty:
            return NONE
        raise SpecError(f"{what} must not be empty")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SpecError(f"{what} {value!r} contains whitespace or control characters; the spec text needs one token")
    return value


def _feature_line(feature: Any, where: str, index: int, with_scale: bool) -> tuple[int, str]:
    if not isinstance(feature, Mapping):
        raise SpecError(f"{where} feature {index} must be a mapping with name, size, unit; got {type(feature).__name__}")
    name = _word(feature.get("name"), f"{where} feature {index} name", allow_empty=False)
    label = f"{where} feature {name!r}"
    size = feature.get("size")
    try:
        if isinstance(size, bool):
            raise TypeError
        size = operator.index(size)  # ints, numpy ints; not floats
    except TypeError:
        raise SpecError(f"{label}: size must be an integer, got {size!r}") from None
    if size < 1:
        raise SpecError(f"{label}: size must be at least 1, got {size}")
    unit = _word(feature.get("unit"), f"{label} unit", allow_empty=True)
    line = f"{name} {size} {unit}"
    if with_scale:
        line += " " + _scale(feature.get("scale"), size, label)
    return size, line


def _scale(scale: Any, size: int, label: str) -> str:
    if scale is None:
        return NONE
    if isinstance(scale, (list, tuple)):
        if len(scale) not in (1, size):
            raise SpecError(f"{label}: scale has {len(scale)} values; give one or {size}")
        return " ".join(format_number(v, f"{label} scale") for v in scale)
    return format_number(scale, f"{label} scale")


def _rate(control_hz: Any) -> str:
    if control_hz is None:
        return NONE
    text = format_number(control_hz, "control_hz")
    if float(control_hz) <= 0:
        raise SpecError(f"control_hz must be positive, got {control_hz!r}")
    return text
