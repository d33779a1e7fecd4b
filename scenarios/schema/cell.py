"""What a cell is built of: tables and fixtures, the conveyor, parts (boxes or meshes) and bins."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scenarios.mesh import UNITS, MeshError, read_mesh
from scenarios.schema.fields import RGBA, Float, Int, NonNegFloat, PosFloat, Range, Size3, Strict_, Vec3, check_range


class BoxConfig(Strict_):
    """A static box: table, fixture, guard post. position is the centre of the box."""

    name: str
    position: Vec3
    size: Size3 = Field(description="full extents x, y, z (m)")
    yaw: Float = 0.0
    color: RGBA = (0.6, 0.6, 0.6, 1.0)


class ConveyorConfig(Strict_):
    name: str = "conveyor"
    position: Vec3 = Field(description="centre of the belt's top surface (m)")
    length: PosFloat = Field(le=10.0, description="m along the direction of travel")
    width: PosFloat = Field(le=2.0, description="m")
    yaw: Float = Field(0.0, description="direction of travel in the world xy plane (rad); 0 = +x")
    belt_speed: NonNegFloat = Field(0.1, le=2.0, description="m/s")
    friction: PosFloat = Field(1.0, le=5.0)
    color: RGBA = (0.15, 0.15, 0.15, 1.0)


# vhacd's settings (pybullet.vhacd keywords). Part of the decomposition's cache key: change one and
# every cached decomposition is made again.
VHACD_PARAMETERS = {"resolution": 100_000, "concavity": 0.0025, "maxNumVerticesPerCH": 64, "minVolumePerCH": 0.0001}
MAX_MESH_EXTENT = 2.0  # m: a part bigger than this was almost surely declared in the wrong units


def _absolute(path: str, info: ValidationInfo) -> str:
    """A path relative to the scenario file's folder (the loader passes it), else to the working directory."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path((info.context or {}).get("base_dir", ".")) / p
    return str(p.resolve())


class MeshConfig(Strict_):
    """A part's shape from the user's own mesh file: Wavefront OBJ or STL (ASCII or binary).

    The file carries no unit: `units` says which it is in (no guessing). The part's origin and centre of
    mass is the centre of the mesh's bounding box (every cell places, grasps and judges a part by its
    centre), its size the bounding box in metres, its orientation the file's axes (z up on the belt).
    Collision: `vhacd`, a convex decomposition (PyBullet's V-HACD) that follows a non-convex part's
    shape, made once and cached; or `convex_hull`, one hull around the whole mesh (exact for a convex
    part, and nothing to compute). What the cameras see is the mesh itself.
    """

    file: str = Field(description="path to the .obj or .stl file (relative to the scenario file's folder)")
    units: Optional[Literal["m", "mm", "cm", "in"]] = Field(None, description="the unit of the file's coordinates: m, mm, cm or in (required)")
    scale: PosFloat = Field(1.0, le=1000.0, description="multiplier on the mesh after units (1 = as drawn)")
    collision: Literal["vhacd", "convex_hull"] = Field(
        "vhacd", description="vhacd: a convex decomposition (follows a non-convex shape; made once and cached); "
                             "convex_hull: one convex hull around the whole mesh")

    _file = field_validator("file")(lambda v, info: _absolute(v, info))

    @model_validator(mode="after")
    def _read(self) -> "MeshConfig":
        if self.units is None:
            raise ValueError(f"declare the mesh's units: one of {', '.join(UNITS)} (a mesh file carries no unit; "
                             "genba does not guess it)")
        try:
            mesh = read_mesh(self.file)
        except MeshError as exc:
            raise ValueError(str(exc)) from None
        low, high = mesh.bounds
        extent = (high - low) * UNITS[self.units] * self.scale
        if extent.max() > MAX_MESH_EXTENT:
            raise ValueError(f"{self.file}: the mesh is {np.round(extent, 3).tolist()} m in {self.units!r} at scale "
                             f"{self.scale:g}, over the {MAX_MESH_EXTENT} m a part may be: are the units right?")
        if extent.min() < 0.001:
            raise ValueError(f"{self.file}: the mesh is {np.round(extent, 6).tolist()} m in {self.units!r} at scale "
                             f"{self.scale:g}, under 1 mm on a side: are the units right?")
        self._extent, self._centre, self._sha256 = tuple(float(e) for e in extent), (low + high) / 2, mesh.sha256
        return self

    _extent: tuple[float, float, float] = PrivateAttr()
    _centre: Any = PrivateAttr()  # np.ndarray: the bounding box's centre in the file's units
    _sha256: str = PrivateAttr()

    @property
    def extent(self) -> tuple[float, float, float]:
        """The bounding box's x, y, z extents in metres: the part's size."""
        return self._extent

    @property
    def centre(self) -> "np.ndarray":
        """The bounding box's centre in the file's own coordinates and units."""
        return self._centre

    @property
    def sha256(self) -> str:
        """Of the file's bytes when the scenario was loaded."""
        return self._sha256

    @property
    def metres_per_unit(self) -> float:
        return UNITS[self.units] * self.scale


def mesh_size(size: Optional[tuple], given: bool, mesh: MeshConfig, key: str) -> tuple[float, float, float]:
    """A mesh part's size is its bounding box; a size given beside it must say the same (within 0.1 mm)."""
    if given and size is not None and max(abs(a - b) for a, b in zip(size, mesh.extent)) > 1e-4:
        raise ValueError(f"{key}.size {list(size)} m differs from the mesh's bounding box {[round(e, 6) for e in mesh.extent]} m: "
                         f"a mesh part's size is derived from its mesh; drop {key}.size")
    return mesh.extent


class PartsConfig(Strict_):
    size: Size3 = Field((0.04, 0.04, 0.04), description="full extents x, y, z (m) of the box; with mesh: derived, its bounding box")
    mesh: Optional[MeshConfig] = Field(None, description="the part's shape from a mesh file instead of a box")
    mass: PosFloat = Field(0.1, le=20.0, description="kg")
    friction: PosFloat = Field(1.0, le=5.0)
    color: RGBA = (0.9, 0.45, 0.1, 1.0)
    count: Int = Field(1, ge=1, le=50, description="parts per episode")
    spawn_interval: Range = Field((4.0, 6.0), description="s between arrivals (uniform)")

    _interval = field_validator("spawn_interval")(lambda v: check_range(v, "spawn_interval"))

    @model_validator(mode="after")
    def _derived_size(self) -> "PartsConfig":
        if self.mesh is not None:
            object.__setattr__(self, "size", mesh_size(self.size, "size" in self.model_fields_set, self.mesh, "parts"))
        return self


class BinConfig(Strict_):
    name: str
    position: Vec3 = Field(description="centre of the bin's floor (m)")
    size: tuple[PosFloat, PosFloat] = Field((0.2, 0.2), description="inner x, y (m)")
    wall_height: PosFloat = Field(0.08, le=1.0)
    wall_thickness: PosFloat = Field(0.01, le=0.1)
    color: RGBA = (0.2, 0.4, 0.8, 1.0)
