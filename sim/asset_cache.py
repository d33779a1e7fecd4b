"""Generated assets on disk (low-detail and user-robot URDFs, the suction GP7, normalised meshes and their
decompositions): one cache folder, files named by a hash of what made them, written atomically because
parallel envs may race to write the same file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    """Where generated assets go: $GENBA_CACHE_DIR, else a per-user folder in the temp directory."""
    if os.environ.get("GENBA_CACHE_DIR"):
        return Path(os.environ["GENBA_CACHE_DIR"])
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"genba-assets-{user}"


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` to a temporary file beside `path`, then renamed onto it: readers see all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def cached_text(text: str, stem: str, suffix: str = ".urdf", version: int = 1) -> Path:
    """`text` in the cache as STEM-HASH.SUFFIX (the hash of version and text), written on first use."""
    digest = hashlib.sha256(f"{version}\n{text}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{stem}-{digest}{suffix}"
    return path if path.is_file() else write_atomically(path, lambda tmp: tmp.write_text(text))
