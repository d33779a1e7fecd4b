"""Reading a YAML file a user wrote, with errors that say what and where: the one reader of every YAML the CLI takes
(scenarios, randomisation profiles, presets, run configs, search spaces, robustness suites)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _UserLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one without a word) and reads
    1e-3 as a number (below)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden here, by design
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_UserLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UserLoader.construct_mapping)
# PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: 3e-4 and 1e30 were strings, so
# `--set hyperparams.learning_rate=3e-4` failed and `noise: {tool_position: 1e-3}` was "not a valid number".
# YAML 1.2 (and every user) reads them as numbers.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_UserLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml_value(text: str) -> Any:
    """One value a user typed on a command line (`--set key=value`), read as in their YAML files."""
    return yaml.load(text, Loader=_UserLoader)  # noqa: S506 (a SafeLoader)


def read_yaml(path: Path, error: type[Exception], what: str = "") -> Any:
    """The file's YAML document (None when it is empty). Raises `error(message)`, the message starting with
    `what` and the path, for a directory or unreadable file, bytes that are not UTF-8, YAML that does not
    parse or a key given twice (the last two with the line and column)."""
    where = f"{what} {path}" if what else str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise error(f"{where}: a directory, not a file") from None
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    try:
        return yaml.load(text, Loader=_UserLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where}{at}: not valid YAML ({problem})") from None
