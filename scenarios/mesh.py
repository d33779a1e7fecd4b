"""Triangle meshes of user parts: read Wavefront OBJ and STL (ASCII or binary) with numpy, nothing else.

The schema reads a part's mesh when the scenario is loaded (its bounding box becomes the part's size);
the simulator writes it back as a normalised OBJ (metres, centred) for PyBullet (sim/props/mesh.py).
Only what a rigid part needs is read: vertex positions and triangles (polygons are fanned); normals,
texture coordinates, materials and groups are ignored.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MESH_SUFFIXES = (".obj", ".stl")
# Metres per declared unit. A mesh file carries no unit, so the scenario must say which it is in.
UNITS = {"m": 1.0, "mm": 0.001, "cm": 0.01, "in": 0.0254}


class MeshError(ValueError):
    """A mesh file that cannot be used as a part: missing, unreadable, empty or of an unknown kind."""


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (N, 3) float64, in the file's own units
    faces: np.ndarray  # (M, 3) int64, indices into vertices
    sha256: str  # of the file's bytes

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the axis-aligned bounding box of the vertices the faces use."""
        used = self.vertices[np.unique(self.faces)]
        return used.min(axis=0), used.max(axis=0)


def read_mesh(path: str | Path) -> Mesh:
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise MeshError(f"{path}: a directory, not a mesh file")
    if suffix not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unknown mesh file type {path.suffix or '(none)'!r}; a part's mesh is one of "
                        f"{', '.join(MESH_SUFFIXES)} (Wavefront OBJ, STL)")
    if not path.is_file():
        raise MeshError(f"{path}: no such mesh file")
    data = path.read_bytes()
    try:
        vertices, faces = _read_obj(data) if suffix == ".obj" else _read_stl(data)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise MeshError(f"{path}: not a readable {suffix[1:].upper()} mesh ({exc})") from None
    if len(faces) == 0:
        raise MeshError(f"{path}: the mesh has no triangles")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"{path}: a face refers to a vertex the file does not have")
    if not np.all(np.isfinite(vertices)):
        raise MeshError(f"{path}: the mesh has a vertex that is not a finite number")
    mesh = Mesh(vertices, faces, hashlib.sha256(data).hexdigest())
    low, high = mesh.bounds
    if np.any(high - low <= 0):
        raise MeshError(f"{path}: the mesh is flat (bounding box {np.round(high - low, 9).tolist()} in the file's units); "
                        "a part needs a volume")
    return mesh


def _read_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = [], []
    for line in data.decode("utf-8").splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            if len(fields) < 4:
                raise ValueError(f"a vertex line needs x y z: {line.strip()!r}")
            vertices.append([float(v) for v in fields[1:4]])
        elif fields[0] == "f":
            if len(fields) < 4:
                raise ValueError(f"a face line needs at least three vertices: {line.strip()!r}")
            # 'f 1/2/3 ...': the vertex index comes first; negative indices count from the end (OBJ's rule).
            ids = [int(f.split("/")[0]) for f in fields[1:]]
            ids = [i - 1 if i > 0 else len(vertices) + i for i in ids]
            faces.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3), np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def _read_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    # Binary STL: an 80-byte header, a uint32 count, 50 bytes per triangle. Some binary files start with
    # "solid" too, so the size decides; ASCII otherwise.
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + 50 * count:
            records = np.frombuffer(data, dtype=np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")]),
                                    count=count, offset=84)
            corners = records["v"].reshape(-1, 3).astype(np.float64)
            return corners, np.arange(len(corners), dtype=np.int64).reshape(-1, 3)
    text = data.decode("utf-8")
    if not text.lstrip().startswith("solid"):
        raise ValueError("neither a binary STL (its size does not match its triangle count) nor an ASCII one (no 'solid')")
    corners = [[float(v) for v in line.split()[1:4]] for line in text.splitlines() if line.strip().startswith("vertex")]
    if len(corners) % 3:
        raise ValueError(f"{len(corners)} vertices is not a whole number of triangles")
    return np.asarray(corners, dtype=np.float64).reshape(-1, 3), np.arange(len(corners), dtype=np.int64).reshape(-1, 3)


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray, header: str = "") -> None:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n")
