"""The `--json PATH` file every verb and bench writes: checked before the work, parent folders made, written
atomically (a reader or a crash sees the old file or the new one, never half of it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from genba.errors import AppError
from policies.rundir import atomic_write_text


def json_option(help: str):
    """The `--json PATH` option, its path checked when the command starts: a figure file that cannot be written would
    otherwise fail after the work (a training run, a sweep) with a traceback."""
    return typer.Option(None, "--json", help=help, callback=check_output_file)


def check_output_file(path: Path | None) -> Path | None:
    """A typer callback for an option naming a file the command writes at its end: refused now (typer.BadParameter,
    naming the option) if it is a directory or lies under a file or a folder that cannot be written."""
    if path is None:
        return None
    if not str(path).strip():
        raise typer.BadParameter("an empty path")
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory; give a file name")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())  # its parents are made on writing
    if not existing.is_dir():
        raise typer.BadParameter(f"{existing} is a file, so {path} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"no permission to write in {existing}")
    return path


def write_json(path: str | Path | None, data: Any) -> None:
    """Write `data` as indented JSON to `path`; nothing when `path` is None (no --json given)."""
    if path is not None:
        try:
            atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise AppError(f"--json {path}: cannot write it ({exc.strerror or exc})") from None
