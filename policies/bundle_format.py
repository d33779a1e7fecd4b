"""The bundle on disk: file names, manifest checks and file digests (docs/bundle-format.md).

Shared by the writer (policies.export) and the loader (policies.bundle), so neither imports the other.
`read_manifest` is the one way to read a manifest: it checks the format, its version, the required
keys, the spec hash and every file's sha256 before anything else is trusted.

Format 2 changed only how `spec_hash` is computed (`bridge.spec.spec_hash`: a text controllers can
build in any language, control rate included); format 1 wrote the sha256 of canonical JSON. A format-1
manifest is still read: its hash is verified with the old formula, then replaced by the format-2 hash
in the returned manifest, so everything downstream (the bridge, controllers) sees one kind of hash.

Format 3 adds image inputs (a pixel policy: `observation.images`, one uint8 (B, H, W, C) graph input
per image, the readings vector as input "vector"). A bundle without images is still written as format
2, which it is, so a genba that reads format 2 loads it; a format-2 reader refuses a pixel bundle as
too new instead of feeding its graph one flat vector.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bridge.spec import SpecError, spec_hash
from policies.errors import PolicyError

FORMAT = "genba-bundle"
FORMAT_VERSION = 3  # the newest format this code reads
VECTOR_FORMAT_VERSION = 2  # what a bundle without image inputs is written as
IMAGES_FORMAT_VERSION = 3  # the first format with image inputs
VECTOR_INPUT = "vector"  # a pixel graph's input for the robot's readings (float32, (B, observation.dim))
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "policy.onnx"
TORCHSCRIPT_FILE = "policy.pt"
BACKEND_FILES = {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}
TORCHSCRIPT_IO = "io.json"  # extra file inside policy.pt with obs_dim / act_dim (a trace has no input shape)
REQUIRED_KEYS = ("format", "format_version", "name", "observation", "action", "spec_hash", "control_hz", "robot",
                 "scenario", "files")


class BundleError(PolicyError):
    """A bundle that cannot be used: missing, tampered, truncated, incompatible, or fed a bad observation."""


def is_bundle(path: str | Path) -> bool:
    """Whether `path` is a directory holding a manifest (not yet verified)."""
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The verified manifest of the bundle at `path` (format, keys, spec hash, every file's sha256)."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    mpath = root / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{root}: not a bundle ({MANIFEST_FILE} missing)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON, the file may be truncated ({exc})") from None
    _check_format(manifest, mpath)
    _check_spec(manifest, mpath)
    image_inputs(manifest, mpath)
    chunk_length(manifest, mpath)
    _check_files(manifest, root)
    return manifest


def chunk_length(manifest: dict, where: Any = "manifest") -> int:
    """Actions per forward pass the manifest declares (``chunk.length``; absent: 1), checked.

    A chunk's actions are one control period apart: ``chunk.period_s`` must be 1 / control_hz, so a
    controller that executes them at its control rate executes them as trained.
    """
    chunk = manifest.get("chunk")
    if chunk is None:
        return 1
    if not isinstance(chunk, dict):
        raise BundleError(f"{where}: chunk must be a mapping with length and period_s, got {type(chunk).__name__}")
    length, period = chunk.get("length"), chunk.get("period_s")
    if type(length) is not int or length < 1:
        raise BundleError(f"{where}: chunk.length must be an integer >= 1, got {length!r}")
    hz = manifest.get("control_hz")
    if length > 1 and not (isinstance(hz, (int, float)) and hz > 0):
        raise BundleError(f"{where}: a chunked bundle (chunk.length {length}) needs a positive control_hz, got {hz!r}")
    if length > 1 and not (isinstance(period, (int, float)) and abs(period * hz - 1.0) < 1e-9):
        raise BundleError(f"{where}: chunk.period_s {period!r} is not the control period 1/control_hz = {1 / hz:g} s: "
                          "a chunk's actions are one control period apart")
    return length


def image_inputs(manifest: dict, where: Any = "manifest") -> list[dict]:
    """The manifest's image inputs (``observation.images``; none for a vector bundle), checked.

    Each names its graph input (``key``), a positive ``shape`` [H, W, C] and dtype uint8; keys are unique
    and not the vector input's name. Images need format 3: older readers would not feed them.
    """
    images = manifest["observation"].get("images") or []
    if not images:
        return []
    if not isinstance(images, list):
        raise BundleError(f"{where}: observation.images must be a list, got {type(images).__name__}")
    version = manifest["format_version"]
    if version < IMAGES_FORMAT_VERSION:
        raise BundleError(f"{where}: observation.images (image inputs) need format_version {IMAGES_FORMAT_VERSION}, "
                          f"the manifest says {version}")
    seen = set()
    for i, image in enumerate(images):
        key = image.get("key") if isinstance(image, dict) else None
        shape = image.get("shape") if isinstance(image, dict) else None
        if not isinstance(key, str) or not key or key == VECTOR_INPUT or key in seen:
            raise BundleError(f"{where}: observation.images[{i}] key {key!r} must be a unique name other than {VECTOR_INPUT!r}")
        if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape)):
            raise BundleError(f"{where}: observation image {key!r} shape {shape!r} is not [H, W, C] of positive integers")
        if image.get("dtype") != "uint8":
            raise BundleError(f"{where}: observation image {key!r} dtype {image.get('dtype')!r} is not 'uint8'")
        seen.add(key)
    return images


def _check_format(manifest: Any, mpath: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{mpath}: format is {found!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"{mpath}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise BundleError(f"{mpath}: bundle format_version {version} is newer than this loader supports "
                          f"({FORMAT_VERSION}); upgrade genba to load it")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{mpath}: manifest lacks required keys {missing}")


def _check_spec(manifest: dict, mpath: Path) -> None:
    obs, act = manifest["observation"], manifest["action"]
    try:
        obs_sizes = sum(int(f["size"]) for f in obs["features"])
        act_dim, low, high = int(act["dim"]), act["low"], act["high"]
        obs_dim = int(obs["dim"])
        low_high = (len(low), len(high))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{mpath}: malformed observation/action spec ({exc!r})") from None
    if obs_sizes != obs_dim:
        raise BundleError(f"{mpath}: observation features add up to {obs_sizes} but observation.dim is {obs_dim}")
    if low_high != (act_dim, act_dim):
        raise BundleError(f"{mpath}: action.low and action.high have {low_high[0]} and {low_high[1]} entries; "
                          f"action.dim is {act_dim}")
    try:
        current = spec_hash(obs, act, manifest["control_hz"])
    except SpecError as exc:
        raise BundleError(f"{mpath}: observation/action spec cannot be hashed: {exc}") from None
    written = current if manifest["format_version"] >= 2 else _format1_spec_hash(obs, act)
    if written != manifest["spec_hash"]:
        raise BundleError(f"{mpath}: observation/action spec does not match its spec_hash (manifest edited?)")
    manifest["spec_hash"] = current  # format 1: from here on, the hash every reader and controller uses


def _format1_spec_hash(observation: Any, action: Any) -> str:
    """Format 1's spec hash: sha256 of the canonical JSON (sorted keys, no spaces) of both sections."""
    text = json.dumps({"observation": observation, "action": action}, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_files(manifest: dict, root: Path) -> None:
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{root}: manifest 'files' must map file names to sha256")
    for name, digest in files.items():
        if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST_FILE):
            raise BundleError(f"{root}: manifest lists an invalid file name {name!r}")
        fpath = root / name
        if not fpath.is_file():
            raise BundleError(f"{root}: {name} is listed in the manifest but missing")
        actual = sha256_file(fpath)
        if actual != digest:
            raise BundleError(f"{root}: {name} is corrupt or was modified (sha256 {actual[:12]}..., "
                              f"manifest says {str(digest)[:12]}...); re-export the bundle")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
