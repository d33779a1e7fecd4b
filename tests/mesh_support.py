"""Meshes the mesh-part tests write themselves (numpy only): a hexagonal prism and an L-shaped bracket."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import yaml

from scenarios.loader import BUILTIN_DIR


def prism(profile: np.ndarray, height: float, caps: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A closed prism: the (counter-clockwise) xy profile from z = 0 to `height`; caps: the profile's triangles."""
    n = len(profile)
    vertices = np.vstack([np.c_[profile, np.zeros(n)], np.c_[profile, np.full(n, height)]])
    faces = [(a, c, b) for a, b, c in caps] + [(a + n, b + n, c + n) for a, b, c in caps]
    for i in range(n):
        j = (i + 1) % n
        faces += [(i, j, j + n), (i, j + n, i + n)]
    return vertices, np.array(faces)


def hex_prism(radius: float = 20.0, height: float = 40.0, offset=(100.0, 50.0, 7.0)) -> tuple[np.ndarray, np.ndarray]:
    """A hexagonal nut blank in mm, corners on x (2 * radius across them), off the file's origin by `offset`."""
    angles = np.arange(6) * math.pi / 3
    profile = np.c_[radius * np.cos(angles), radius * np.sin(angles)]
    vertices, faces = prism(profile, height, [(0, k, k + 1) for k in range(1, 5)])
    return vertices + np.asarray(offset), faces


def l_bracket() -> tuple[np.ndarray, np.ndarray]:
    """An L-shaped bracket in mm: 30 x 30 footprint, 8 mm legs, 20 mm tall (non-convex)."""
    profile = np.array([[0, 0], [30, 0], [30, 8], [8, 8], [8, 30], [0, 30]], dtype=float)
    return prism(profile, 20.0, [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)])


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    lines = [f"v {x:g} {y:g} {z:g}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("# written by tests/mesh_support.py\n" + "\n".join(lines) + "\n")
    return path


def write_binary_stl(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    with open(path, "wb") as f:
        f.write(b"binary STL written by tests/mesh_support.py".ljust(80, b" "))
        f.write(struct.pack("<I", len(faces)))
        for tri in faces:
            a, b, c = vertices[tri]
            normal = np.cross(b - a, c - a)
            normal = normal / (np.linalg.norm(normal) or 1.0)
            f.write(struct.pack("<12fH", *normal, *a, *b, *c, 0))
    return path


def write_ascii_stl(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    lines = ["solid part"]
    for tri in faces:
        lines += ["  facet normal 0 0 0", "    outer loop"] + [f"      vertex {x:g} {y:g} {z:g}" for x, y, z in vertices[tri]]
        lines += ["    endloop", "  endfacet"]
    path.write_text("\n".join(lines + ["endsolid part"]) + "\n")
    return path


def conveyor_pick_with_mesh(folder: Path, mesh: dict, **parts) -> Path:
    """The built-in conveyor-pick with its parts given by `mesh` (a relative file resolves from `folder`)."""
    data = yaml.safe_load((BUILTIN_DIR / "conveyor-pick.yaml").read_text())
    data["name"] = "mesh-pick"
    data["parts"].pop("size")
    data["parts"].update(mesh=mesh, **parts)
    path = folder / "mesh-pick.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


if __name__ == "__main__":  # PYTHONPATH=. python tests/mesh_support.py DIR: the hex part and its conveyor-pick cell, to try by hand
    import sys

    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    write_obj(folder / "hex.obj", *hex_prism())
    write_binary_stl(folder / "hex.stl", *hex_prism())
    write_obj(folder / "bracket.obj", *l_bracket())
    print(conveyor_pick_with_mesh(folder, {"file": "hex.obj", "units": "mm"}))
