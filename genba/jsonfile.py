"""The `--json PATH` file every verb and bench writes: parent folders made, written atomically (a reader or a
crash sees the old file or the new one, never half of it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policies.rundir import atomic_write_text


def write_json(path: str | Path | None, data: Any) -> None:
    """Write `data` as indented JSON to `path`; nothing when `path` is None (no --json given)."""
    if path is not None:
        atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
