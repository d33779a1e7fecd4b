"""Typed schema of a scenario file: one factory cell.

Units are SI throughout: metres, seconds, kilograms, radians, m/s. Every model is frozen and rejects
unknown keys, so a typo in a YAML file is an error with a suggestion rather than a silent default.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scenarios.mesh import UNITS, MeshError, read_mesh
from scenarios.naming import ROBOT_MODELS, did_you_mean
from scenarios.naming import env_id as make_env_id
from scenarios.urdf import ArmChain, arm_chain, read_urdf

# Numbers are strict (a quoted "0.5" is an error, not a float); containers stay lax so YAML lists
# fill tuples.
Float = Annotated[float, Strict()]
Int = Annotated[int, Strict()]
PosFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0)]
Vec3 = tuple[Float, Float, Float]
Size3 = tuple[PosFloat, PosFloat, PosFloat]
Range = tuple[Float, Float]
Unit = Annotated[float, Strict(), Field(ge=0, le=1)]
RGBA = tuple[Unit, Unit, Unit, Unit]


class Strict_(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(value: tuple[float, float], what: str = "range") -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{what} must be [low, high] with low <= high, got {list(value)}")
    return value


class ToolConfig(Strict_):
    """The tool genba mounts on a robot given by URDF (robot.urdf): a generic parallel-jaw gripper.

    The same gripper as the GP7's (sim/assets/gp7): 0.7 kg body, two 0.08 kg jaws sliding along the
    tool frame's y, the tool point 0.121 m out along its z. The tool frame is the flange link's frame
    moved by mount_xyz / mount_rpy: its z must point out of the flange (the approach direction).
    Without mount_rpy (and robot.home), it is turned about that z so the jaws face x at home.
    """

    type: Literal["parallel_gripper"] = "parallel_gripper"
    mount_xyz: Vec3 = Field((0.0, 0.0, 0.0), description="tool frame origin in the flange link's frame (m)")
    mount_rpy: Optional[Vec3] = Field(
        None, description="tool frame orientation in the flange link's frame (rad, URDF roll-pitch-yaw); default: the "
                          "flange's, turned about its z so that the jaws face the base's x at home (the jaws are symmetric)")
    finger_travel: PosFloat = Field(0.04, le=0.05, description="m per jaw, closed to open")
    finger_force: PosFloat = Field(60.0, le=1000.0, description="N per jaw")


# --- wrist force/torque sensor and compliant mode (peg-insert; any cell may declare them) ---------------
class WristFTConfig(Strict_):
    """A force/torque sensor between the flange and the tool (PyBullet's joint reaction wrench there).

    It reports the wrench the world exerts on the tool (contacts and any held part's weight), in the
    tool frame (z along the approach direction), about the flange face: a push against a surface
    below the tool reads as a negative z force. In the observation as robot features wrist_force (N)
    and wrist_torque (N m).
    """

    compensation: Literal["tool", "none"] = Field(
        "tool", description="tool: the tool's own weight (the links below the sensor, masses from the URDF) is subtracted, as "
                            "a robot controller's tool-load setting does, so at rest it reads the held part's weight; none: raw")
    sample_hz: PosFloat = Field(500.0, le=10000.0, description="Hz the sensor is sampled at: every k-th physics substep, k the whole "
                                                               "number nearest physics_hz / sample_hz that divides the substeps per control period")
    filter_time_constant: NonNegFloat = Field(0.02, le=1.0, description="s: first-order low-pass over the samples; 0 = none")
    force_noise: NonNegFloat = Field(0.1, le=10.0, description="N: std of Gaussian noise per force axis, added to each reading")
    torque_noise: NonNegFloat = Field(0.005, le=1.0, description="N m: std of Gaussian noise per torque axis")


class ComplianceConfig(Strict_):
    """Admittance on the wrist wrench (needs robot.wrist_ft): the commanded tool position yields to contact forces.

    The command the IK gets is x_cmd = x_target + x_c, where x_c (m, world frame) follows
    damping * dx_c/dt + stiffness * x_c = F (the sensed external force, world frame), integrated once per
    control step (implicit Euler, so any damping > 0 is stable in free space). At rest the tool sits
    F / stiffness off its target, so a target pressed d metres into a surface pushes with about stiffness * d N.
    """

    mode: Literal["admittance"] = "admittance"
    stiffness: tuple[PosFloat, PosFloat, PosFloat] = Field((800.0, 800.0, 800.0), description="N/m per world axis x, y, z")
    damping: tuple[PosFloat, PosFloat, PosFloat] = Field((400.0, 400.0, 400.0), description="N s/m per world axis x, y, z")
    max_offset: PosFloat = Field(0.01, le=0.1, description="m: |x_c| per axis stays within this")
    deadband: NonNegFloat = Field(0.3, le=10.0, description="N per axis ignored (sensor noise must not make the tool wander)")


class SuctionToolConfig(Strict_):
    """A vacuum suction cup in place of the gripper (robot.tool: {type: suction}); the GP7 only, for now.

    The action's last value switches the vacuum: > 0 on, <= 0 off (released at once). With the vacuum
    on, the cup seals on a body whose flat face it touches squarely (face within seal_tolerance of the
    cup face, face normal within seal_angle of the cup axis, the whole cup on the face); a sealed body
    is held by a fixed constraint whose force is capped at max_holding_force, so a part heavier than
    that, or one pulled harder for long enough (an impact, a fast swing), slips off the cup: past
    max_stretch (or turned past seal_angle) the seal is lost and the part drops. The stretch also lets a
    held part lag the arm's servo for a moment without dropping, as a bellows cup does. Defaults: a 40 mm flat cup (an assumption, a common size, e.g.
    Schmalz SPB1 40) at 60 % relative vacuum: F = dp x A = 60 kPa x 12.6 cm^2 = 75 N in theory
    (Schmalz's rule, schmalz.com glossary "Holding force"), 50 N with the safety factor 1.5 that the
    German UVV prescribes (Schmalz, "Design of the suction cup").
    """

    type: Literal["suction"]
    cup_radius: PosFloat = Field(0.02, ge=0.005, le=0.1, description="m, radius of the cup's sealing lip")
    max_holding_force: PosFloat = Field(50.0, le=2000.0, description="N the vacuum holds before the part slips off the cup")
    seal_tolerance: PosFloat = Field(0.004, le=0.02, description="m between the cup face and the part's face for a seal")
    seal_angle: PosFloat = Field(0.2, le=0.6, description="rad between the cup axis and the face's normal for a seal; "
                                                          "a held part turned this far off its sealed pose drops")
    max_stretch: PosFloat = Field(0.01, le=0.05, description="m a held part may be pulled off its sealed pose (the bellows "
                                                             "give) before the seal breaks and it drops")


def _tool_type(value) -> str:
    """The tool's `type`, parallel_gripper when left out (the URDF robots' default)."""
    if isinstance(value, dict):
        return value.get("type", "parallel_gripper")
    return getattr(value, "type", "parallel_gripper")


Tool = Annotated[Union[Annotated[ToolConfig, Tag("parallel_gripper")], Annotated[SuctionToolConfig, Tag("suction")]],
                 Discriminator(_tool_type)]
# Built-in models that can carry a suction cup in place of their gripper (robot.tool: {type: suction}).
SUCTION_MODELS = ("gp7",)

# RobotConfig keys that describe a robot given by URDF; a built-in model brings its own.
URDF_ROBOT_KEYS = ("name", "base_link", "flange_link", "arm_joints", "max_joint_speed", "max_joint_effort", "tool",
                   "workspace_low", "workspace_high", "rated_payload")
JointValues = Union[PosFloat, tuple[PosFloat, ...]]


class RobotConfig(Strict_):
    """The arm, where it stands and how actions drive it: a built-in `model`, or any arm by `urdf`."""

    model: Optional[str] = Field(None, description=f"built-in robot model, one of {ROBOT_MODELS}; or give urdf")
    urdf: Optional[str] = Field(None, description="path to the arm's URDF (relative to the scenario file's folder), instead of model")
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                                description="urdf: the robot's name in manifests and KPIs; default the URDF's <robot name>")
    base_link: Optional[str] = Field(None, description="urdf: the link the arm stands on; default the URDF's root link")
    flange_link: Optional[str] = Field(None, description="urdf: the link the tool mounts on; default the end of the unbranched chain")
    arm_joints: Optional[tuple[str, ...]] = Field(
        None, description="urdf: the driven joints, base to flange; default every movable joint between base and flange (others are frozen at 0)"
    )
    max_joint_speed: Optional[JointValues] = Field(None, description="urdf: rad/s (m/s) per arm joint, or one for all; default the URDF's <limit velocity>")
    max_joint_effort: Optional[JointValues] = Field(None, description="urdf: N.m (N) per arm joint, or one for all; default the URDF's <limit effort>")
    tool: Optional[Tool] = Field(None, description="the tool on the flange: {type: parallel_gripper} (the default) or "
                                                   "{type: suction} (a vacuum cup; built-in gp7 only)")
    workspace_low: Optional[Vec3] = Field(None, description="urdf: tool target box in the base frame (m); default from the arm's reach")
    workspace_high: Optional[Vec3] = None
    rated_payload: Optional[PosFloat] = Field(None, description="urdf: kg; default unknown")
    base_position: Vec3 = (0.0, 0.0, 0.0)
    base_yaw: Float = Field(0.0, ge=-3.1416, le=3.1416, description="rad")
    control: Literal["ee_delta", "joint_delta"] = Field(
        "ee_delta", description="ee_delta: (dx, dy, dz, dyaw, grip) through IK; joint_delta: per-joint + grip"
    )
    max_ee_speed: PosFloat = Field(0.5, le=2.0, description="m/s of the tool at |action| = 1 (ee_delta)")
    max_yaw_rate: PosFloat = Field(2.0, le=10.0, description="rad/s of tool yaw at |action| = 1 (ee_delta)")
    max_joint_speed_fraction: PosFloat = Field(
        0.5, le=1.0, description="fraction of each joint's rated speed at |action| = 1 (joint_delta)"
    )
    position_gain: PosFloat = Field(0.3, le=1.0, description="PyBullet position-control gain (unitless)")
    velocity_gain: PosFloat = Field(1.0, le=2.0, description="PyBullet velocity-control gain (unitless)")
    home: Optional[tuple[Float, ...]] = Field(None, description="joint angles (rad) at reset; model default if unset "
                                                                "(urdf: the tool pointing down 0.4 m ahead of the base, 0.25 m up)")
    wrist_ft: Optional[WristFTConfig] = Field(None, description="a wrist force/torque sensor in the observation; off unless declared")
    compliance: Optional[ComplianceConfig] = Field(None, description="compliant mode of the arm (needs wrist_ft); off (stiff position control) unless declared")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in ROBOT_MODELS:
            raise ValueError(f"unknown robot model {v!r}; valid: {', '.join(ROBOT_MODELS)}" + did_you_mean(v, ROBOT_MODELS))
        return v

    @field_validator("urdf")
    @classmethod
    def _absolute_urdf(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        """Relative to the scenario file's folder (the loader passes it), else to the working directory."""
        if v is None:
            return v
        path = Path(v).expanduser()
        if not path.is_absolute():
            path = Path((info.context or {}).get("base_dir", ".")) / path
        return str(path.resolve())

    @model_validator(mode="after")
    def _compliance_needs_sensor(self) -> "RobotConfig":
        if self.compliance is not None and self.wrist_ft is None:
            raise ValueError("robot.compliance acts on the wrist wrench: declare robot.wrist_ft too")
        if self.compliance is not None and self.control != "ee_delta":
            raise ValueError("robot.compliance shifts the tool target: it needs robot.control: ee_delta")
        return self

    @model_validator(mode="after")
    def _one_robot(self) -> "RobotConfig":
        if (self.model is None) == (self.urdf is None):
            raise ValueError("give exactly one of robot.model (a built-in arm) and robot.urdf (any arm's URDF file)"
                             + (", not both" if self.model else ""))
        if isinstance(self.tool, SuctionToolConfig):
            if self.urdf is not None:
                raise ValueError("robot.tool type 'suction' is available on the built-in models "
                                 f"{', '.join(SUCTION_MODELS)} only, not yet on a robot given by urdf")
            if self.model not in SUCTION_MODELS:
                raise ValueError(f"robot.tool type 'suction': the built-in model {self.model!r} has no suction variant; "
                                 f"models with one: {', '.join(SUCTION_MODELS)}")
        if self.model is not None:
            given = [k for k in URDF_ROBOT_KEYS if getattr(self, k) is not None
                     and not (k == "tool" and (isinstance(self.tool, SuctionToolConfig) or self.tool == ToolConfig()))]
            if given:
                raise ValueError(f"robot.{given[0]} applies to a robot given by urdf; the built-in model {self.model!r} brings its own")
            return self
        chain = self.arm_chain()
        n = len(chain.arm_joints)
        for key in ("max_joint_speed", "max_joint_effort", "home"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) != n:
                raise ValueError(f"robot.{key} has {len(value)} values, the arm has {n} joints "
                                 f"({', '.join(j.name for j in chain.arm_joints)}) in {self.urdf}")
        if self.home is not None:
            for j, q in zip(chain.arm_joints, self.home):
                if j.type != "continuous" and not j.lower - 1e-9 <= q <= j.upper + 1e-9:
                    raise ValueError(f"robot.home: {q:g} for <joint name={j.name!r}> is outside its <limit> "
                                     f"[{j.lower:g}, {j.upper:g}] in {self.urdf}")
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ValueError("robot.workspace_low and robot.workspace_high go together: give both or neither")
        if self.workspace_low is not None and any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise ValueError(f"robot.workspace_low {list(self.workspace_low)} must be below workspace_high {list(self.workspace_high)} on every axis")
        if self.name is not None and self.name in ROBOT_MODELS:
            raise ValueError(f"robot.name {self.name!r} is a built-in model's; name a robot given by urdf otherwise")
        return self

    def arm_chain(self) -> ArmChain:
        """The URDF's arm (robot.urdf only), checked: see scenarios/urdf.py."""
        if self.urdf is None:
            raise ValueError(f"robot {self.model!r} is a built-in model, not a URDF")
        return arm_chain(read_urdf(self.urdf), self.base_link, self.flange_link, self.arm_joints,
                         speed_given=self.max_joint_speed is not None, effort_given=self.max_joint_effort is not None)

    @property
    def suction(self) -> Optional[SuctionToolConfig]:
        """The suction cup's settings when the tool is one, else None (a parallel gripper)."""
        return self.tool if isinstance(self.tool, SuctionToolConfig) else None

    @property
    def robot_name(self) -> str:
        """How manifests, KPIs and logs name the robot: the model, or a URDF robot's name."""
        if self.model is not None:
            return self.model
        if self.name is not None:
            return self.name
        name = read_urdf(self.urdf).robot_name
        return f"{name}-urdf" if name in ROBOT_MODELS else name


class PhysicsConfig(Strict_):
    physics_hz: PosFloat = Field(240.0, le=2000.0, description="physics substep rate (Hz)")
    control_hz: PosFloat = Field(20.0, le=500.0, description="policy/control rate (Hz)")
    gravity: Float = Field(-9.81, le=0.0, ge=-30.0, description="m/s^2 along z")
    solver_iterations: Int = Field(50, ge=1, le=500)

    @model_validator(mode="after")
    def _integer_substeps(self) -> "PhysicsConfig":
        ratio = self.physics_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"physics_hz / control_hz must be a whole number of substeps, got {self.physics_hz}/{self.control_hz} = {ratio:.3f}"
            )
        return self

    @property
    def substeps(self) -> int:
        return int(round(self.physics_hz / self.control_hz))

    @property
    def timestep(self) -> float:
        return 1.0 / self.physics_hz

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_hz


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


def _mesh_size(size: Optional[tuple], given: bool, mesh: MeshConfig, key: str) -> tuple[float, float, float]:
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

    _interval = field_validator("spawn_interval")(lambda v: _check_range(v, "spawn_interval"))

    @model_validator(mode="after")
    def _derived_size(self) -> "PartsConfig":
        if self.mesh is not None:
            object.__setattr__(self, "size", _mesh_size(self.size, "size" in self.model_fields_set, self.mesh, "parts"))
        return self


class BinConfig(Strict_):
    name: str
    position: Vec3 = Field(description="centre of the bin's floor (m)")
    size: tuple[PosFloat, PosFloat] = Field((0.2, 0.2), description="inner x, y (m)")
    wall_height: PosFloat = Field(0.08, le=1.0)
    wall_thickness: PosFloat = Field(0.01, le=0.1)
    color: RGBA = (0.2, 0.4, 0.8, 1.0)


CAMERA_MODALITIES = ("rgb", "depth", "segmentation")
CAMERA_USES = ("view", "pixels", "perception")
# The orbit form's defaults: a camera placed by position/look_at or a mount must leave them as they are.
_ORBIT_DEFAULTS = {"target": (0.4, 0.0, 0.1), "distance": 1.4, "yaw": 0.8, "pitch": -0.5}


def _check_aim(position: tuple, look_at: tuple, up: tuple, what: str) -> None:
    """A look-at pose needs a viewing direction and an `up` that is not along it."""
    forward = [b - a for a, b in zip(position, look_at)]
    norm = sum(v * v for v in forward) ** 0.5
    if norm < 1e-9:
        raise ValueError(f"{what}: look_at must differ from position, both are {list(position)}")
    cross = (forward[1] * up[2] - forward[2] * up[1], forward[2] * up[0] - forward[0] * up[2], forward[0] * up[1] - forward[1] * up[0])
    up_norm = sum(v * v for v in up) ** 0.5
    if up_norm < 1e-9 or sum(v * v for v in cross) ** 0.5 < 1e-6 * norm * up_norm:
        raise ValueError(f"{what}: up {list(up)} is zero or parallel to the viewing direction {[round(v, 6) for v in forward]}; "
                         "give an `up` across it (e.g. [1, 0, 0] for a camera looking straight down)")


def _check_choices(values: tuple[str, ...], valid: tuple[str, ...], what: str, one: str) -> tuple[str, ...]:
    if not values:
        raise ValueError(f"{what} must list at least one of {', '.join(valid)}")
    for v in values:
        if v not in valid:
            raise ValueError(f"unknown {one} {v!r}; valid: {', '.join(valid)}" + did_you_mean(v, valid))
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists an entry twice: {list(values)}")
    return values


class CameraIntrinsics(Strict_):
    """Pinhole intrinsics in OpenCV's convention: pixels, (0, 0) the centre of the top-left pixel, v down."""

    fx: PosFloat = Field(description="focal length along u (pixels)")
    fy: PosFloat = Field(description="focal length along v (pixels)")
    cx: Optional[Float] = Field(None, description="principal point u (pixels); default the image centre, (width - 1) / 2")
    cy: Optional[Float] = Field(None, description="principal point v (pixels); default the image centre, (height - 1) / 2")


class CameraMount(Strict_):
    """A camera carried by a robot link: it moves and turns with the link.

    Coordinates are in the link's URDF frame (where its joint places it; not its centre of mass).
    The defaults put the camera on the link origin looking along the link's +z, with its +x up in the
    image: for `tool` (z along the approach direction, x along the tool's yaw) that looks where the
    fingers point.
    """

    link: str = Field(description="a link of the robot's URDF, or 'tool' for the model's tool link (the point IK places)")
    position: Vec3 = Field((0.0, 0.0, 0.0), description="camera centre in the link frame (m)")
    look_at: Vec3 = Field((0.0, 0.0, 1.0), description="a point on the optical axis in the link frame (m)")
    up: Vec3 = Field((1.0, 0.0, 0.0), description="direction in the link frame that points up in the image")

    @model_validator(mode="after")
    def _aim(self) -> "CameraMount":
        _check_aim(self.position, self.look_at, self.up, "mount")
        return self


class CameraNoise(Strict_):
    """Gaussian noise on every rendered frame, drawn from the env's seeded RNG."""

    rgb_std: NonNegFloat = Field(0.0, le=255.0, description="std per RGB channel (intensity units, 0-255)")
    depth_std: NonNegFloat = Field(0.0, le=1.0, description="std of depth (m)")


class CameraConfig(Strict_):
    """A camera: the viewer's eye, a pixel observation and/or perception's sensor (`use`).

    Placed one of three ways: the orbit form (target, distance, yaw, pitch: the default), `position` +
    `look_at` (+ `up`) in the world, or `mount` on a robot link. Intrinsics: `fov` (square pixels,
    principal point at the image centre) or `intrinsics` (fx, fy, cx, cy in pixels), not both.
    """

    name: str
    target: Vec3 = Field(_ORBIT_DEFAULTS["target"], description="orbit form: the point looked at (m, world)")
    distance: PosFloat = Field(_ORBIT_DEFAULTS["distance"], description="orbit form: camera to target (m)")
    yaw: Float = Field(_ORBIT_DEFAULTS["yaw"], description="orbit form: rad about z")
    pitch: Float = Field(_ORBIT_DEFAULTS["pitch"], ge=-1.5708, le=1.5708, description="orbit form: rad, negative looks down")
    position: Optional[Vec3] = Field(None, description="camera centre (m, world); with look_at, instead of the orbit form")
    look_at: Optional[Vec3] = Field(None, description="a point on the optical axis (m, world)")
    up: Vec3 = Field((0.0, 0.0, 1.0), description="world direction that points up in the image (with position/look_at)")
    mount: Optional[CameraMount] = Field(None, description="on a robot link, instead of a fixed pose")
    fov: PosFloat = Field(0.87, le=3.0, description="vertical field of view (rad)")
    intrinsics: Optional[CameraIntrinsics] = Field(None, description="fx, fy, cx, cy (pixels), instead of fov")
    width: Int = Field(320, ge=16, le=4096, description="pixels")
    height: Int = Field(240, ge=16, le=4096, description="pixels")
    near: PosFloat = Field(0.02, le=100.0, description="near clip plane (m along the optical axis)")
    far: PosFloat = Field(10.0, le=1000.0, description="far clip plane (m along the optical axis); nothing beyond reads as far")
    modalities: tuple[str, ...] = Field(
        ("rgb",), description="any of rgb (uint8), depth (m along the optical axis), segmentation (Bullet body id, -1 none)"
    )
    rate_hz: Optional[PosFloat] = Field(None, description="frames per second (Hz); must divide physics.control_hz; default: the control rate")
    noise: CameraNoise = Field(CameraNoise(), description="rgb_std (intensity units, 0-255), depth_std (m); default none")
    use: tuple[str, ...] = Field(
        ("view",), description="any of view (the viewer's camera), pixels (an image observation), perception (what perception sees)"
    )

    _modalities = field_validator("modalities")(lambda v: _check_choices(v, CAMERA_MODALITIES, "modalities", "modality"))
    _uses = field_validator("use")(lambda v: _check_choices(v, CAMERA_USES, "use", "use"))

    @model_validator(mode="after")
    def _one_pose(self) -> "CameraConfig":
        if (self.position is None) != (self.look_at is None):
            raise ValueError("position and look_at go together: give both (a fixed camera) or neither")
        if self.position is not None and self.mount is not None:
            raise ValueError("give either position/look_at (a fixed camera) or mount (on a robot link), not both")
        changed = [k for k, v in _ORBIT_DEFAULTS.items() if getattr(self, k) != v]
        if changed and (self.position is not None or self.mount is not None):
            raise ValueError(f"orbit-form fields ({', '.join(changed)}) do not apply: this camera is placed by "
                             f"{'position/look_at' if self.position is not None else 'mount'}: drop them")
        if self.position is not None:
            _check_aim(self.position, self.look_at, self.up, "camera")
        if self.intrinsics is not None and self.fov != 0.87:
            raise ValueError("give either fov or intrinsics, not both")
        if self.near >= self.far:
            raise ValueError(f"near ({self.near} m) must be less than far ({self.far} m)")
        return self

    @property
    def placement(self) -> str:
        """How the camera is placed: 'orbit', 'look_at' or 'mount'."""
        return "mount" if self.mount is not None else "look_at" if self.position is not None else "orbit"


def check_camera_rates(cameras: tuple[CameraConfig, ...], control_hz: float) -> None:
    """A camera renders on control steps only: its rate must divide the control rate."""
    for cam in cameras:
        if cam.rate_hz is None:
            continue
        ratio = control_hz / cam.rate_hz
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"camera {cam.name!r}: rate_hz {cam.rate_hz} must divide physics.control_hz {control_hz} "
                             f"(a whole number of control steps per frame, e.g. {control_hz}, {control_hz / 2}, {control_hz / 4})")


NonNegInt = Annotated[int, Strict(), Field(ge=0)]
Scale = tuple[PosFloat, PosFloat]  # a multiplier range [low, high]: nominal 1, low > 0
Periods = tuple[NonNegInt, NonNegInt]  # whole control periods [low, high]


class _Factors(Strict_):
    """A section of domain-randomisation factors, each off (None) unless declared.

    Naming convention (tools that widen or read profiles rely on it): a factor whose name ends in
    `_scale` is a multiplier range with nominal 1; every other factor is additive with nominal 0 (a
    range, a scalar magnitude, or a mapping of magnitudes).
    """

    @field_validator("*")
    @classmethod
    def _ordered(cls, value, info):
        if isinstance(value, tuple) and len(value) == 2:
            _check_range(value, info.field_name)
        return value


class DynamicsRandomization(_Factors):
    """Physics of parts and robot. Parts draw theirs when they spawn, the robot at each reset."""

    part_mass_scale: Optional[Scale] = Field(None, description="multiplier on each part's mass (and inertia), per part")
    part_friction_scale: Optional[Scale] = Field(None, description="multiplier on each part's lateral friction coefficient, per part")
    part_restitution: Optional[tuple[Unit, Unit]] = Field(
        None, description="each part's restitution (unitless, 0-1; absolute, PyBullet's nominal is 0), per part; Bullet "
                           "multiplies both bodies' restitution in a contact, so a surface at 0 still absorbs the bounce")
    link_mass_scale: Optional[Scale] = Field(None, description="multiplier on each robot link's mass (and inertia), per link")
    joint_damping: Optional[tuple[NonNegFloat, NonNegFloat]] = Field(
        None, description="N m s/rad added to each arm joint's damping, per joint")
    position_gain_scale: Optional[Scale] = Field(None, description="multiplier on robot.position_gain (PyBullet's), per arm joint")
    velocity_gain_scale: Optional[Scale] = Field(None, description="multiplier on robot.velocity_gain (PyBullet's), per arm joint")
    actuator_delay: Optional[Periods] = Field(
        None, description="whole control periods each command is held back before the motors get it (a FIFO), per episode")


class SensingRandomization(_Factors):
    """What the policy sees; never rewards, success or KPIs (the simulator's truth)."""

    noise: Optional[dict[str, NonNegFloat]] = Field(
        None, description="observation feature name (as in env.feature_spec()) -> std of Gaussian noise in that feature's "
                          "own unit (m, rad, m/s...), added each step; names are checked when the env is built")
    latency: Optional[Periods] = Field(
        None, description="whole control periods the observation is delayed (the policy sees the one from k steps ago), per episode")
    frame_drop: Optional[Unit] = Field(
        None, description="probability (0-1) that a pixels/perception camera frame is not delivered and the previous one repeats")


class VisualRandomization(_Factors):
    """How the cell looks to its cameras, drawn per episode."""

    light_direction: Optional[NonNegFloat] = Field(None, le=1.5708, description="rad: the light direction is tilted by up to this (uniform)")
    light_color_scale: Optional[Scale] = Field(None, description="gain per RGB channel of the light's colour")
    ambient_scale: Optional[Scale] = Field(None, description="multiplier on the ambient light coefficient")
    color_jitter: Optional[Unit] = Field(
        None, description="added to each RGB channel (0-1) of parts, tables, fixtures, bins, tote and conveyor, uniform in "
                          "+-this, clipped to [0, 1]")
    camera_position: Optional[NonNegFloat] = Field(None, le=0.5, description="m: each camera's centre moves up to this per camera axis")
    camera_rotation: Optional[NonNegFloat] = Field(None, le=0.5, description="rad: each camera turns up to this about each of its axes")
    camera_fov: Optional[NonNegFloat] = Field(None, le=0.5, description="rad: each camera's vertical field of view changes by up to +-this")


class RandomizationConfig(Strict_):
    """Ranges drawn uniformly from the env's seeded RNG at each reset or spawn.

    The task's draws (goal, part offsets, yaw, arrivals, belt speed, joint noise) are always on; the
    dynamics / sensing / visuals sections (domain randomisation) are off unless declared, and are drawn
    from a generator of their own so the task's draws are the same with and without them.
    """

    goal_low: Vec3 = (0.3, -0.25, 0.05)
    goal_high: Vec3 = (0.6, 0.25, 0.4)
    part_lateral_offset: Range = Field((-0.05, 0.05), description="m across the belt")
    part_yaw: Range = Field((-0.4, 0.4), description="rad")
    first_arrival: Range = Field((0.0, 1.0), description="s after reset")
    belt_speed_scale: Range = Field((1.0, 1.0), description="multiplier on belt_speed per episode")
    joint_noise: NonNegFloat = Field(0.0, le=0.5, description="rad added to the home pose")
    dynamics: Optional[DynamicsRandomization] = Field(None, description="part and robot physics; off unless declared")
    sensing: Optional[SensingRandomization] = Field(None, description="observation noise, latency, camera frame drops; off unless declared")
    visuals: Optional[VisualRandomization] = Field(None, description="light, colours and camera poses; off unless declared")

    @model_validator(mode="after")
    def _ordered(self) -> "RandomizationConfig":
        for name in ("part_lateral_offset", "part_yaw", "first_arrival", "belt_speed_scale"):
            _check_range(getattr(self, name), name)
        for lo, hi in zip(self.goal_low, self.goal_high):
            if lo > hi:
                raise ValueError(f"goal_low must be <= goal_high per axis, got {list(self.goal_low)} / {list(self.goal_high)}")
        return self


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
            object.__setattr__(self, "size", _mesh_size(self.size, "size" in self.model_fields_set, self.mesh, "part_types"))
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

    _yaw = field_validator("yaw")(lambda v: _check_range(v, "yaw"))


class BinSortReward(Strict_):
    tool_to_part: Float = Field(-1.0, description="weight on tool-to-target-part distance (m) before the grasp")
    part_to_bin: Float = Field(-1.0, description="weight on target-part-to-its-bin drop point distance (m)")
    grasped: Float = Field(0.5, description="weight on the target-held indicator")
    sorted: Float = Field(10.0, description="weight on a part coming to rest in its own bin (once per part)")
    wrong_bin: Float = Field(-10.0, description="weight on a part coming to rest in another bin (once per part)")
    dropped: Float = Field(-5.0, description="weight on a part coming to rest outside the tote and every bin (once per part)")
    collision: Float = Field(-1.0, description="weight per new collision with a fixture")


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

    _clearance = field_validator("clearance")(lambda v: _check_range(v, "clearance"))


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


class Scenario(Strict_):
    """One factory cell: what to build, how it is randomised, and what counts as success."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: Int = Field(0, ge=0)
    description: str = ""
    robot: RobotConfig
    physics: PhysicsConfig = PhysicsConfig()
    max_episode_steps: Int = Field(100, ge=1, le=100_000)
    tables: tuple[BoxConfig, ...] = ()
    conveyor: Optional[ConveyorConfig] = None
    parts: Optional[PartsConfig] = None
    bins: tuple[BinConfig, ...] = ()
    fixtures: tuple[BoxConfig, ...] = ()
    cameras: tuple[CameraConfig, ...] = (CameraConfig(name="overview"),)
    randomization: RandomizationConfig = RandomizationConfig()
    task: Task

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        names = [b.name for b in self.tables + self.fixtures] + [b.name for b in self.bins]
        names += [c.name for c in self.cameras] + ([self.conveyor.name] if self.conveyor else [])
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique across tables, fixtures, bins, cameras and conveyor; repeated: {dupes}")
        if isinstance(self.task, ConveyorPickTask):
            if self.conveyor is None or self.parts is None:
                raise ValueError("task type 'conveyor_pick' needs a 'conveyor' and 'parts' section")
            bin_names = [b.name for b in self.bins]
            if self.task.bin not in bin_names:
                raise ValueError(
                    f"task.bin {self.task.bin!r} is not a bin of this scenario; bins: {bin_names}" + did_you_mean(self.task.bin, bin_names)
                )
        if isinstance(self.task, BinSortTask):
            bin_names = [b.name for b in self.bins]
            for i, part_type in enumerate(self.task.part_types):
                if part_type.bin not in bin_names:
                    raise ValueError(
                        f"task.part_types[{i}].bin {part_type.bin!r} (type {part_type.name!r}) is not a bin of this scenario; "
                        f"bins: {bin_names}" + did_you_mean(part_type.bin, bin_names)
                    )
            if self.task.tote.name in names:
                raise ValueError(f"task.tote.name {self.task.tote.name!r} is already the name of a table, fixture, bin or camera")
        if isinstance(self.task, PalletizeTask):
            self._check_palletize(self.task)
        self._check_mesh_grasp()
        return self

    def mesh_part_keys(self) -> list[str]:
        """Where this scenario's parts are given by mesh files (keys as in the file), if anywhere."""
        keys = ["parts.mesh"] if self.parts is not None and self.parts.mesh is not None else []
        if isinstance(self.task, BinSortTask):
            keys += [f"task.part_types[{i}].mesh" for i, t in enumerate(self.task.part_types) if t.mesh is not None]
        return keys

    def _check_mesh_grasp(self) -> None:
        """A mesh part must fit between the open jaws of the gripper that picks it (box parts keep their old rules)."""
        if self.robot.suction is not None or not isinstance(self.task, (ConveyorPickTask, BinSortTask)):
            return
        # A URDF robot's jaws are its tool's; the built-in models' (panda, gp7) travel 0.04 m each, as ToolConfig's default.
        opening = 2 * (self.robot.tool.finger_travel if isinstance(self.robot.tool, ToolConfig) else ToolConfig().finger_travel)
        if isinstance(self.task, ConveyorPickTask) and self.parts is not None and self.parts.mesh is not None:
            # conveyor-pick turns the jaws to the part's yaw modulo a quarter turn: either side may come between them.
            width = max(self.parts.size[:2])
            if width >= opening:
                raise ValueError(f"parts.mesh: the part is {width:.4f} m across (its bounding box {[round(e, 4) for e in self.parts.size]} m), "
                                 f"the gripper opens {opening:.3f} m: conveyor-pick grasps a part across x or y, both must fit")
        if isinstance(self.task, BinSortTask):
            for i, t in enumerate(self.task.part_types):
                if t.mesh is not None and min(t.size[:2]) >= opening:
                    raise ValueError(f"task.part_types[{i}].mesh: part type {t.name!r} is {min(t.size[:2]):.4f} m across at its "
                                     f"narrowest (bounding box {[round(e, 4) for e in t.size]} m), the gripper opens {opening:.3f} m")

    def _check_palletize(self, task: PalletizeTask) -> None:
        if self.conveyor is None or self.parts is None:
            raise ValueError("task type 'palletize' needs a 'conveyor' (the infeed) and 'parts' (the boxes) section")
        if not isinstance(self.robot.tool, SuctionToolConfig):
            raise ValueError("task type 'palletize' picks boxes by suction: give robot.tool: {type: suction}")
        if self.parts.mesh is not None:
            raise ValueError("parts.mesh: palletize stacks boxes (the suction cup seals on their flat tops, the pattern "
                             "packs their footprints): its parts are boxes, give parts.size and no mesh")
        fixtures = {f.name: f for f in self.fixtures}
        for key in ("pallet", "infeed_stop"):
            name = getattr(task, key)
            if name not in fixtures:
                raise ValueError(f"task.{key} {name!r} is not a fixture of this scenario; fixtures: {list(fixtures)}"
                                 + did_you_mean(name, fixtures))
        p, (sx, sy, _) = task.pattern, self.parts.size
        if self.parts.count > p.slots:
            raise ValueError(f"parts.count {self.parts.count} boxes do not fit the pattern's {p.slots} slots "
                             f"({p.rows} rows x {p.columns} columns x {p.layers} layers)")
        # The layer's footprint (both turns of it with alternate_rotation) must lie on the pallet's top.
        lx, ly = p.rows * sx + (p.rows - 1) * p.gap, p.columns * sy + (p.columns - 1) * p.gap
        need = (max(lx, ly), max(lx, ly)) if p.alternate_rotation and p.layers > 1 else (lx, ly)
        pallet = fixtures[task.pallet]
        if need[0] > pallet.size[0] + 1e-9 or need[1] > pallet.size[1] + 1e-9:
            raise ValueError(f"the pattern's layer ({need[0]:.3f} x {need[1]:.3f} m with parts.size {list(self.parts.size)} "
                             f"and gap {p.gap} m) overhangs the pallet {task.pallet!r} ({pallet.size[0]:.3f} x {pallet.size[1]:.3f} m)")

    @model_validator(mode="after")
    def _peg_insert(self) -> "Scenario":
        if isinstance(self.task, PegInsertTask):
            if self.robot.wrist_ft is None:
                raise ValueError("task type 'peg_insert' reads the wrist wrench: declare robot.wrist_ft")
            names = [b.name for b in self.tables + self.fixtures] + [c.name for c in self.cameras]
            if self.task.hole.name in names:
                raise ValueError(f"task.hole.name {self.task.hole.name!r} is already the name of a table, fixture or camera")
        return self

    @model_validator(mode="after")
    def _camera_rates(self) -> "Scenario":
        check_camera_rates(self.cameras, self.physics.control_hz)
        return self

    @property
    def env_id(self) -> str:
        return make_env_id(self.name, self.version)
