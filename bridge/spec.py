"""The spec hash: what a controller and a bundle must agree on before the first step.

A bundle's ``spec_hash`` is the sha256 of a short text listing the observation features, the camera
images a pixel policy takes (if any), the action kind and features and the control rate
(docs/bridge-protocol.md, "Spec hash"). The text is
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
IMAGE_MODALITIES = {"rgb": 3, "depth": 1}  # modality -> channels of its uint8 (H, W, C) image


class SpecError(BridgeError):
    """A feature description that cannot be written into the spec text (bad name, size, unit or number)."""


def spec_text(observation: Mapping[str, Any] | Sequence[Mapping[str, Any]], action: Mapping[str, Any],
              control_hz: float | None) -> str:
    """The text whose sha256 is the spec hash (lines joined by newlines, one trailing newline).

    observation: a mapping with "features" (a manifest's "observation" section), or the feature
        list itself; each feature a mapping with "name", "size" and "unit" (other keys ignored).
        A mapping's non-empty "images" (a pixel policy's camera inputs: "key", "shape" [H, W, C],
        "dtype", "modality", a depth image's "depth" {"near_m", "far_m"}) add an images block,
        sorted by key; without images the text is what it always was.
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
    images = observation.get("images") if isinstance(observation, Mapping) else None
    if images:
        lines += _image_lines(images)
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


def _image_lines(images: Any) -> list[str]:
    """`images <count>`, then per image (sorted by key) `<key> <H> <W> <C> <dtype> <modality>[ <near> <far>]`."""
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise SpecError(f"observation images must be a list of image descriptions, got {type(images).__name__}")
    lines = {}
    for index, image in enumerate(images):
        if not isinstance(image, Mapping):
            raise SpecError(f"observation image {index} must be a mapping with key, shape, dtype, modality; got {type(image).__name__}")
        key = _word(image.get("key"), f"observation image {index} key", allow_empty=False)
        label = f"observation image {key!r}"
        if key in lines:
            raise SpecError(f"{label} is listed twice")
        shape = image.get("shape")
        try:
            if isinstance(shape, (str, bytes)) or len(shape) != 3 or any(isinstance(v, bool) for v in shape):
                raise TypeError
            height, width, channels = (operator.index(v) for v in shape)
        except TypeError:
            raise SpecError(f"{label}: shape must be three integers [H, W, C], got {shape!r}") from None
        if min(height, width, channels) < 1:
            raise SpecError(f"{label}: shape {list(shape)} must be positive")
        dtype = _word(image.get("dtype"), f"{label} dtype", allow_empty=False)
        modality = _word(image.get("modality"), f"{label} modality", allow_empty=False)
        if IMAGE_MODALITIES.get(modality, channels) != channels:
            raise SpecError(f"{label}: a {modality} image has {IMAGE_MODALITIES[modality]} channels, shape says {channels}")
        line = f"{key} {height} {width} {channels} {dtype} {modality}"
        if modality == "depth":
            depth = image.get("depth")
            if not isinstance(depth, Mapping):
                raise SpecError(f"{label}: a depth image needs depth {{near_m, far_m}} (the range its 0..255 spans)")
            line += f" {format_number(depth.get('near_m'), f'{label} depth near_m')} {format_number(depth.get('far_m'), f'{label} depth far_m')}"
        lines[key] = line
    # Sorted by key (code point order, as strcmp orders UTF-8): inputs are named, their order is not part of the spec.
    return [f"images {len(lines)}"] + [lines[k] for k in sorted(lines)]


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
