"""Typed schema of a scenario file: one factory cell.

Units are SI throughout: metres, seconds, kilograms, radians, m/s. Every model is frozen and rejects
unknown keys, so a typo in a YAML file is an error with a suggestion rather than a silent default.
One module per section: fields (shared types), robot, cell (tables, fixtures, conveyor, parts, bins),
camera, randomization, tasks; this one holds the physics section and the Scenario that ties them together.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from scenarios.naming import did_you_mean
from scenarios.naming import env_id as make_env_id
from scenarios.schema.camera import CameraConfig, CameraIntrinsics, CameraMount, CameraNoise, check_camera_rates
from scenarios.schema.cell import VHACD_PARAMETERS, BinConfig, BoxConfig, ConveyorConfig, MeshConfig, PartsConfig
from scenarios.schema.fields import Float, Int, PosFloat, Strict_
from scenarios.schema.randomization import (
    DynamicsRandomization,
    RandomizationConfig,
    SensingRandomization,
    VisualRandomization,
)
from scenarios.schema.robot import (
    SUCTION_MODELS,
    URDF_ROBOT_KEYS,
    ComplianceConfig,
    RobotConfig,
    SuctionToolConfig,
    ToolConfig,
    WristFTConfig,
)
from scenarios.schema.tasks import (
    BinSortTask,
    ConveyorPickTask,
    HoleConfig,
    PalletizeTask,
    PalletPattern,
    PartTypeConfig,
    PegConfig,
    PegInsertTask,
    ReachTask,
    Task,
    ToteConfig,
)


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
    # At least one: the viewer, videos and `render()` show the cell through the first viewing camera.
    cameras: tuple[CameraConfig, ...] = Field((CameraConfig(name="overview"),), min_length=1)
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


__all__ = [
    "SUCTION_MODELS", "URDF_ROBOT_KEYS", "VHACD_PARAMETERS", "BinConfig", "BinSortTask", "BoxConfig", "CameraConfig",
    "CameraIntrinsics", "CameraMount", "CameraNoise", "ComplianceConfig", "ConveyorConfig", "ConveyorPickTask",
    "DynamicsRandomization", "HoleConfig", "MeshConfig", "PalletizeTask", "PalletPattern", "PartsConfig", "PartTypeConfig",
    "PegConfig", "PegInsertTask", "PhysicsConfig", "RandomizationConfig", "ReachTask", "RobotConfig", "Scenario",
    "SensingRandomization", "SuctionToolConfig", "Task", "ToolConfig", "ToteConfig", "VisualRandomization", "WristFTConfig",
]
