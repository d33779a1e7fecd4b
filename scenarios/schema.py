"""Typed schema of a scenario file: one factory cell.

Units are SI throughout: metres, seconds, kilograms, radians, m/s. Every model is frozen and rejects
unknown keys, so a typo in a YAML file is an error with a suggestion rather than a silent default.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from scenarios.naming import ROBOT_MODELS, did_you_mean
from scenarios.naming import env_id as make_env_id

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


class RobotConfig(Strict_):
    """The arm, where it stands and how actions drive it."""

    model: str = Field(description=f"robot model, one of {ROBOT_MODELS}")
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
    home: Optional[tuple[Float, ...]] = Field(None, description="joint angles (rad) at reset; model default if unset")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in ROBOT_MODELS:
            raise ValueError(f"unknown robot model {v!r}; valid: {', '.join(ROBOT_MODELS)}" + did_you_mean(v, ROBOT_MODELS))
        return v


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


class PartsConfig(Strict_):
    size: Size3 = (0.04, 0.04, 0.04)
    mass: PosFloat = Field(0.1, le=20.0, description="kg")
    friction: PosFloat = Field(1.0, le=5.0)
    color: RGBA = (0.9, 0.45, 0.1, 1.0)
    count: Int = Field(1, ge=1, le=50, description="parts per episode")
    spawn_interval: Range = Field((4.0, 6.0), description="s between arrivals (uniform)")

    _interval = field_validator("spawn_interval")(lambda v: _check_range(v, "spawn_interval"))


class BinConfig(Strict_):
    name: str
    position: Vec3 = Field(description="centre of the bin's floor (m)")
    size: tuple[PosFloat, PosFloat] = Field((0.2, 0.2), description="inner x, y (m)")
    wall_height: PosFloat = Field(0.08, le=1.0)
    wall_thickness: PosFloat = Field(0.01, le=0.1)
    color: RGBA = (0.2, 0.4, 0.8, 1.0)


class CameraConfig(Strict_):
    name: str
    target: Vec3 = (0.4, 0.0, 0.1)
    distance: PosFloat = 1.4
    yaw: Float = Field(0.8, description="rad about z")
    pitch: Float = Field(-0.5, ge=-1.5708, le=1.5708, description="rad")
    fov: PosFloat = Field(0.87, le=3.0, description="vertical field of view (rad)")
    width: Int = Field(320, ge=16, le=4096)
    height: Int = Field(240, ge=16, le=4096)


class RandomizationConfig(Strict_):
    """Ranges drawn uniformly from the env's seeded RNG at each reset or spawn."""

    goal_low: Vec3 = (0.3, -0.25, 0.05)
    goal_high: Vec3 = (0.6, 0.25, 0.4)
    part_lateral_offset: Range = Field((-0.05, 0.05), description="m across the belt")
    part_yaw: Range = Field((-0.4, 0.4), description="rad")
    first_arrival: Range = Field((0.0, 1.0), description="s after reset")
    belt_speed_scale: Range = Field((1.0, 1.0), description="multiplier on belt_speed per episode")
    joint_noise: NonNegFloat = Field(0.0, le=0.5, description="rad added to the home pose")

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


Task = Annotated[Union[ReachTask, ConveyorPickTask], Field(discriminator="type")]


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
        return self

    @property
    def env_id(self) -> str:
        return make_env_id(self.name, self.version)
