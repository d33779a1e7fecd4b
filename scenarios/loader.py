"""Load scenario files (built-in names or paths) into validated `Scenario` objects.

Errors name the file, the key path, the bad value and, where a name was expected, the closest valid one.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scenarios.naming import did_you_mean
from scenarios.schema import Scenario, Task
from scenarios.yamlfile import read_yaml

# The `type:` tag of every task kind (the members of the Task union).
TASK_TYPES = tuple(typing.get_args(m.model_fields["type"].annotation)[0] for m in typing.get_args(typing.get_args(Task)[0]))

BUILTIN_DIR = Path(__file__).resolve().parent


class ScenarioError(Exception):
    """A scenario file that cannot be read or does not satisfy the schema."""


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def names_a_file(text: str) -> bool:
    """Whether a scenario or profile argument is a file (a .yaml/.yml name, a path, or an existing file), not a
    shipped name."""
    return text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file()


def resolve_path(name_or_path: str | Path) -> Path:
    """A built-in name (`conveyor-pick`) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if names_a_file(text):
        if path.is_dir():
            raise ScenarioError(f"{path}: a directory, not a scenario file")
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        return path
    if path.is_dir() and not (BUILTIN_DIR / f"{text}.yaml").is_file():  # a built-in name wins over a folder of that name
        raise ScenarioError(f"{path}: a directory, not a scenario file")
    path = BUILTIN_DIR / f"{text}.yaml"
    if not path.is_file():
        names = builtin_names()
        raise ScenarioError(f"unknown scenario {text!r}; built-in: {', '.join(names)}" + did_you_mean(text, names))
    return path


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = resolve_path(name_or_path)
    data = read_yaml(path, ScenarioError)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return parse_scenario(data, source=str(path), base_dir=path.resolve().parent)


def parse_scenario(data: dict[str, Any], source: str = "<dict>", base_dir: str | Path | None = None) -> Scenario:
    """base_dir: where relative paths in the scenario (robot.urdf) start; default the working directory."""
    try:
        return Scenario.model_validate(data, context={"base_dir": str(base_dir or ".")})
    except ValidationError as exc:
        lines = [_format_error(err, data) for err in exc.errors()]
        head = f"{source}: {len(lines)} error{'s' if len(lines) > 1 else ''} in scenario"
        raise ScenarioError("\n  ".join([head, *lines])) from None


def scenario_hash(scenario: Scenario) -> str:
    """Content hash of the validated scenario (defaults filled in), stable across key order and comments."""
    blob = json.dumps(scenario.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _format_error(err: dict[str, Any], data: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    # Union members appear in the location as the tag ('reach'); drop them so the key path is the file's own.
    clean = tuple(p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "task" and p in TASK_TYPES))
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in clean).replace(".[", "[") or "<top>"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(Scenario, clean[:-1], data)
        return f"{path}: unknown key{did_you_mean(str(clean[-1]), allowed)}; valid keys here: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in err.get("ctx", {}).get("expected_tags", "").split(",")]
        return f"{path}.type: unknown task type {err['ctx'].get('tag')!r}{did_you_mean(str(err['ctx'].get('tag')), tags)}; valid: {', '.join(tags)}"
    msg = err["msg"].removeprefix("Value error, ")
    # A whole section (a model-level check) is not repeated back: the message names what is wrong in it. A value is
    # shown shortened: YAML aliases can blow a list up to megabytes, and an integer can have hundreds of digits.
    shown = "" if kind == "missing" or isinstance(value, dict) else f" (got {_SHORT.repr(value)})"
    return f"{path}: {_shorten(msg)}{shown}"


_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = 8
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlong = 24
_SHORT.maxlevel = 2


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,d} characters)"


def _fields_at(model: type[BaseModel], loc: tuple, data: Any) -> list[str]:
    """Field names of the model found by following `loc` from the root schema."""
    current: Any = model
    node = data
    for part in loc:
        if isinstance(part, int):
            current = _unwrap_sequence(current)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current = current.model_fields[part].annotation
        node = node.get(part) if isinstance(node, dict) else None
        current = _pick_union_member(current, node)
    current = _pick_union_member(current, node)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap_sequence(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    return args[0] if args else tp


def _pick_union_member(tp: Any, node: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    members = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) else []
    if not members:
        return tp
    if len(members) == 1:
        return members[0]
    tag = node.get("type") if isinstance(node, dict) else None
    for member in members:
        field = getattr(member, "model_fields", {}).get("type")
        if field is not None and tag in typing.get_args(field.annotation):
            return member
    return members[0]

