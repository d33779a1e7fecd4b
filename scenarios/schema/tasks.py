"""The `task:` section: one model per task type, each with its reward weights and success rule."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from scenarios.schema.cell import MeshConfig, mesh_size
from scenarios.schema.fields import RGBA, Float, Int, NonNegFloat, PosFloat, Range, Size3, Strict_, Vec3, check_range


def time_cost():
    """The `time` reward weight of the tasks whose KPI is cycle time (applied by sim.env.FactoryEnv.step)."""
    return Field(0.0, le=0.0, description="weight per control step (a cost, <= 0): cycle time in the reward. An episode "
                 "that ends early without success is charged for the steps it had left, so losing a part never saves time")


class ReachReward(Strict_):
    distance: Float = Field(-1.0, description="weight on tool-to-goal distance (m)")
    success: Float = Field(0.0, description="weight on the success indicator")


class ReachTask(Strict_):
    type: Literal["reach"]
    success_distance: PosFloat = Field(0.05, le=0.5, description="m")
    reward: ReachReward = ReachReward()


class ConveyorPickReward(Strict_):
    tool_to_part: Float = Field(-1.0, description="weight on tool-to-part distance (m) before the grasp")
    part_to_bin: Float = Field(-1.0, description="weight on part-to-bin-target distance (m)")
    grasped: Float = Field(0.5, description="weight on the part-held indicator")
    placed: Float = Field(10.0, description="weight on the part-placed event (once per part)")
    dropped: Float = Field(-5.0, description="weight on a part lost off the belt or floor (once per part)")
    collision: Float = Field(-1.0, description="weight per new collision with a fixture")
    time: Float = time_cost()


class ConveyorPickTask(Strict_):
    type: Literal["conveyor_pick"]
    bin: str = Field(description="name of the target bin")
    settle_speed: PosFloat = Field(0.05, le=1.0, description="m/s below which a part in a bin counts as resting")
    settle_time: NonNegFloat = Field(0.2, le=5.0, description="s of rest before a part counts as placed")
    reward: ConveyorPickReward = ConveyorPickReward()


class ToteConfig(Strict_):
    """An open-top tote parts arrive in. Its walls are a fixture; its floor is where parts are picked."""

    name: str = "infeed_tote"
    position: Vec3 = Field(description="centre of the tote's inner floor surface (m)")
    size: tuple[PosFloat, PosFloat] = Field(description="inner x, y (m)")
    wall_height: PosFloat = Field(0.05, le=0.5, description="m above the floor")
    wall_thickness: PosFloat = Field(0.01, le=0.1, description="m")
    color: RGBA = (0.55, 0.55, 0.58, 1.0)  # neutral grey: no part colour blends into it


class PartTypeConfig(Strict_):
    """One class of part: how it looks and weighs, and which bin it is sorted into."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    shape: Literal["box", "cylinder", "mesh"]
    size: Optional[Size3] = Field(None, description="full extents x, y, z (m); a cylinder's x and y are its diameter, z its height; "
                                                    "shape mesh: derived, the mesh's bounding box")
    mesh: Optional[MeshConfig] = Field(None, description="shape mesh: the mesh file")
    color: RGBA
    mass: PosFloat = Field(0.1, le=20.0, description="kg")
    friction: PosFloat = Field(1.0, le=5.0)
    bin: str = Field(description="name of the bin parts of this type belong in")

    @model_validator(mode="after")
    def _round_cylinder(self) -> "PartTypeConfig":
        if (self.shape == "mesh") != (self.mesh is not None):
            raise ValueError(f"part type {self.name!r}: " + ("shape mesh needs a mesh: {file: ..., units: ...}" if self.shape == "mesh"
                                                              else f"a mesh is for shape mesh, not {self.shape}"))
        if self.mesh is not None:
            object.__setattr__(self, "size", mesh_size(self.size, "size" in self.model_fields_set, self.mesh, "part_types"))
        elif self.size is None:
            raise ValueError(f"part type {self.name!r}: a {self.shape} needs a size (x, y, z in m)")
        if self.shape == "cylinder" and self.size[0] != self.size[1]:
            raise ValueError(f"part type {self.name!r}: a cylinder's size x and y are its diameter and must be equal, got {list(self.size)}")
        return self


class PlacementConfig(Strict_):
    """How parts are laid into the tote at reset, drawn uniformly from the env's seeded RNG."""

    min_spacing: PosFloat = Field(0.1, le=1.0, description="m between part centres, so the open jaws fit between neighbours")
    wall_margin: NonNegFloat = Field(0.07, le=1.0, description="m from a part centre to the inner walls, so the open jaws clear them")
    yaw: Range = Field((-3.1416, 3.1416), description="rad about z")

    _yaw = field_validator("yaw")(lambda v: check_range(v, "yaw"))


class BinSortReward(Strict_):
    tool_to_part: Float = Field(-1.0, description="weight on tool-to-target-part distance (m) before the grasp")
    part_to_bin: Float = Field(-1.0, description="weight on target-part-to-its-bin drop point distance (m)")
    grasped: Float = Field(0.5, description="weight on the target-held indicator")
    sorted: Float = Field(10.0, description="weight on a part coming to rest in its own bin (once per part)")
    wrong_bin: Float = Field(-10.0, description="weight on a part coming to rest in another bin (once per part)")
    dropped: Float = Field(-5.0, description="weight on a part coming to rest outside the tote and every bin (once per part)")
    collision: Float = Field(-1.0, description="weight per new collision with a fixture")
    time: Float = time_cost()


class BinSortTask(Strict_):
    type: Literal["bin_sort"]
    tote: ToteConfig
    part_types: tuple[PartTypeConfig, ...] = Field(min_length=1, description="the classes of part; each names its bin")
    parts_per_episode: Int = Field(3, ge=1, le=20)
    placement: PlacementConfig = PlacementConfig()
    settle_speed: PosFloat = Field(0.05, le=1.0, description="m/s below which a released part counts as resting")
    settle_time: NonNegFloat = Field(0.2, le=5.0, description="s of rest before a part's outcome counts")
    reward: BinSortReward = BinSortReward()

    @model_validator(mode="after")
    def _consistent(self) -> "BinSortTask":
        names = [t.name for t in self.part_types]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"part_types names must be unique; repeated: {dupes}")
        p = self.placement
        free = [s - 2 * p.wall_margin for s in self.tote.size]
        if min(free) < 0:
            raise ValueError(
                f"placement.wall_margin {p.wall_margin} m leaves no room in a tote of inner size {list(self.tote.size)} m"
            )
        # A grid at min_spacing always fits this many parts; the random draw falls back to it.
        fits = math.prod(int(math.floor(f / p.min_spacing + 1e-9)) + 1 for f in free)
        if self.parts_per_episode > fits:
            raise ValueError(
                f"parts_per_episode {self.parts_per_episode} do not fit {p.min_spacing} m apart in the tote's "
                f"{free[0]:.3f} x {free[1]:.3f} m free area (at most {fits}); enlarge the tote or lower placement.min_spacing"
            )
        return self


# --- peg-insert ------------------------------------------------------------------------------------------
class PegConfig(Strict_):
    """A square peg held in the gripper: a fixed constraint stands in for a firm grasp (no slip in the jaws)."""

    width: PosFloat = Field(0.02, le=0.035, description="m, square cross-section side (the jaws close on it)")
    length: PosFloat = Field(0.08, le=0.3, description="m")
    mass: PosFloat = Field(0.1, le=2.0, description="kg")
    grip_depth: PosFloat = Field(0.02, le=0.1, description="m of the peg above the tool point (between the jaws); the rest sticks out")
    friction: PosFloat = Field(0.3, le=2.0, description="lateral friction coefficient (Bullet combines it with the fixture's by product)")
    contact_stiffness: PosFloat = Field(5.0e3, le=1.0e7, description="N/m per contact point: the compliance of jaw pads and "
                                                                     "holder that the rigid grasp leaves out (Bullet soft contact)")
    contact_damping: PosFloat = Field(100.0, le=1.0e5, description="N s/m per contact point")
    color: RGBA = (0.85, 0.7, 0.2, 1.0)


class HoleConfig(Strict_):
    """A fixture block with a square through-hole (built from boxes: PyBullet has no boolean geometry)."""

    name: str = "hole_fixture"
    position: Vec3 = Field(description="nominal centre of the hole's top opening (m); the block stands below it")
    block_size: tuple[PosFloat, PosFloat] = Field((0.1, 0.1), description="m, outer x, y of the block")
    height: PosFloat = Field(0.04, le=0.3, description="m, block height = hole depth (a through hole onto the table)")
    clearance: tuple[PosFloat, PosFloat] = Field((0.0005, 0.001), description="m: hole side minus peg side, drawn per episode (uniform)")
    chamfer: NonNegFloat = Field(0.001, le=0.01, description="m, 45-degree chamfer around the opening")
    position_error: NonNegFloat = Field(0.002, le=0.02, description="m: the true hole is off its nominal position by up to +-this in x and y (uniform)")
    friction: PosFloat = Field(0.3, le=2.0)
    color: RGBA = (0.45, 0.47, 0.5, 1.0)

    _clearance = field_validator("clearance")(lambda v: check_range(v, "clearance"))


class PegInsertReward(Strict_):
    tip_to_hole: Float = Field(-1.0, description="weight on the peg tip to nominal-hole-bottom distance (m)")
    inserted: Float = Field(10.0, description="weight on the inserted event")
    over_force: Float = Field(-10.0, description="weight on the over-force-limit event")
    force: Float = Field(-0.01, description="weight per N of the step's peak contact force on the peg")


class PegInsertTask(Strict_):
    type: Literal["peg_insert"]
    peg: PegConfig = PegConfig()
    hole: HoleConfig
    depth: PosFloat = Field(0.02, le=0.3, description="m the peg tip must go below the hole's top to count as inserted")
    force_limit: PosFloat = Field(40.0, le=1000.0, description="N: a contact force on the peg above this (any physics substep) ends the episode as a failure")
    jam_force: PosFloat = Field(10.0, le=1000.0, description="N: a jam is a force above this ...")
    jam_time: PosFloat = Field(1.0, le=30.0, description="s ... with less than jam_progress of depth gained over this long")
    jam_progress: PosFloat = Field(0.0005, le=0.01, description="m")
    reward: PegInsertReward = PegInsertReward()

    @model_validator(mode="after")
    def _fits(self) -> "PegInsertTask":
        p, h = self.peg, self.hole
        if self.depth > p.length - p.grip_depth:
            raise ValueError(f"task.depth {self.depth} m is more than the peg sticks out of the jaws "
                             f"(peg.length {p.length} - peg.grip_depth {p.grip_depth} m)")
        if self.depth > h.height:
            raise ValueError(f"task.depth {self.depth} m is deeper than the hole (hole.height {h.height} m)")
        if p.grip_depth >= p.length:
            raise ValueError(f"peg.grip_depth {p.grip_depth} m must be less than peg.length {p.length} m")
        wall = min(h.block_size) / 2 - (p.width + h.clearance[1]) / 2 - 2 * h.chamfer
        if wall < 0.005:
            raise ValueError(f"hole.block_size {list(h.block_size)} m leaves walls under 5 mm around a {p.width} m peg "
                             f"with clearance {h.clearance[1]} m and chamfer {h.chamfer} m")
        if self.jam_force >= self.force_limit:
            raise ValueError(f"task.jam_force {self.jam_force} N must be below task.force_limit {self.force_limit} N")
        return self


# --- palletize ---------------------------------------------------------------------------------
class PalletPattern(Strict_):
    """How boxes are stacked on the pallet: layers of rows x columns, filled layer by layer, row by row.

    Layer 0's rows run along the pallet's x, its columns along y, each box with its x along the pallet's
    x; with alternate_rotation every other layer is the same grid turned a quarter turn about the
    pallet's centre (boxes too), so the joints of one layer are bridged by the next.
    """

    rows: Int = Field(ge=1, le=10, description="boxes along the pallet's x in layer 0")
    columns: Int = Field(ge=1, le=10, description="boxes along the pallet's y in layer 0")
    layers: Int = Field(1, ge=1, le=10)
    gap: NonNegFloat = Field(0.01, le=0.2, description="m between neighbouring boxes of a layer")
    alternate_rotation: bool = Field(True, description="turn every other layer (1, 3, ...) a quarter turn")

    @property
    def slots(self) -> int:
        return self.rows * self.columns * self.layers


class PalletizeReward(Strict_):
    tool_to_box: Float = Field(-1.0, description="weight on tool-to-box distance (m) before the box is held")
    box_to_slot: Float = Field(-1.0, description="weight on box-to-slot distance (m)")
    held: Float = Field(0.5, description="weight on the box-held (vacuum sealed) indicator")
    placed: Float = Field(10.0, description="weight on a box coming to rest within tolerance of its slot (once per box)")
    misplaced: Float = Field(-5.0, description="weight on a box coming to rest on the pallet out of tolerance (once per box)")
    dropped: Float = Field(-5.0, description="weight on a box lost from the cup or fallen to the floor (once per event)")
    collision: Float = Field(-1.0, description="weight per new collision with a fixture")


class PalletizeTask(Strict_):
    """Boxes (the scenario's `parts`) arrive on the infeed `conveyor`; stack them on the pallet in the pattern.

    The i-th box of an episode goes to the i-th slot (layer by layer, row by row). Success: every box
    within position_tolerance (centre) and yaw_tolerance of its slot and tilted at most tilt_tolerance,
    all at rest: the stack stands.
    """

    type: Literal["palletize"]
    pallet: str = Field(description="name of the fixture the boxes are stacked on (its top face is layer 0's floor)")
    pattern: PalletPattern
    infeed_stop: str = Field(description="name of the fixture at the conveyor's downstream end that stops the boxes for pickup")
    position_tolerance: PosFloat = Field(0.01, le=0.1, description="m between a box's centre and its slot's")
    yaw_tolerance: PosFloat = Field(0.0524, le=0.5, description="rad of yaw error (modulo the box's symmetry); 3 deg")
    tilt_tolerance: PosFloat = Field(0.0873, le=0.5, description="rad a box may lean and still count as standing; 5 deg")
    settle_speed: PosFloat = Field(0.02, le=1.0, description="m/s below which a released box counts as resting")
    settle_time: NonNegFloat = Field(0.3, le=5.0, description="s of rest before a released box's outcome counts")
    reward: PalletizeReward = PalletizeReward()


Task = Annotated[Union[ReachTask, ConveyorPickTask, BinSortTask, PegInsertTask, PalletizeTask], Field(discriminator="type")]
