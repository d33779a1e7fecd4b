"""Generated assets on disk (low-detail and user-robot URDFs, the suction GP7, normalised meshes and their
decompositions): one cache folder, files named by a hash of what made them, written atomically because
parallel envs may race to write the same file.

A file found there is checked before it is used (cached_text compares it with the text it would write; the mesh
cache checks each file's end, sim/props/mesh.py) and written again when emptied, cut short or overwritten. The
default folder sits in the shared temp directory under a predictable name, so it is made 0700 and refused when
another user owns it or others may write to it: they could plant the robot or mesh files a simulation loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from sim.errors import SimError

ENV_VAR = "GENBA_CACHE_DIR"


class AssetCacheError(SimError):
    """The asset cache folder cannot be used: not writable, or (the default one) not private to this user."""


def cache_dir() -> Path:
    """Where generated assets go: $GENBA_CACHE_DIR, else a private per-user folder in the temp directory."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])  # the user's choice: used as given (a team may share one on purpose)
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return _private(Path(tempfile.gettempdir()) / f"genba-assets-{user}")


def _private(folder: Path) -> Path:
    """`folder`, made 0700 if missing; refused unless it is a real folder of this user that nobody else may write."""
    try:
        with contextlib.suppress(FileExistsError):  # whatever is there is judged below
            folder.mkdir(mode=0o700)
        info = folder.lstat()
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    posix = hasattr(os, "getuid")  # Windows reports no owner and every folder as 0777 here
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "not a folder (a link or file put there)"
    elif posix and info.st_uid != os.getuid():
        problem = f"owned by another user (uid {info.st_uid})"
    elif posix and info.st_mode & 0o022:
        problem = f"writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        raise AssetCacheError(f"{folder}: the default asset cache is {problem}, so its robot and mesh files cannot be "
                              f"trusted; remove it, or set {ENV_VAR} to a folder of your own")
    return folder


def _unwritable(folder: Path, exc: OSError) -> AssetCacheError:
    how = f"{ENV_VAR} names it: point it at a writable folder" if os.environ.get(ENV_VAR) else \
        f"it is the default asset cache: set {ENV_VAR} to a writable folder"
    return AssetCacheError(f"{folder}: cannot write generated assets there ({exc.strerror or type(exc).__name__}); {how}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` to a temporary file beside `path`, then renamed onto it: readers see all of it or none."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or foreign cache folder: say which, and how to choose another
        raise _unwritable(path.parent, exc) from None
    finally:
        with contextlib.suppress(OSError):  # nothing written, or no folder to write it in
            tmp.unlink()
    return path


def cached_text(text: str, stem: str, suffix: str = ".urdf", version: int = 1) -> Path:
    """`text` in the cache as STEM-HASH.SUFFIX (the hash of version and text), written on first use and again
    whenever the file there is not exactly `text` (emptied, cut short, overwritten)."""
    digest = hashlib.sha256(f"{version}\n{text}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{stem}-{digest}{suffix}"
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return path
    except OSError:  # missing (first use) or unreadable: write it
        pass
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))
