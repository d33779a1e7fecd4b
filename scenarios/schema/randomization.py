"""The `randomization:` section: the task's draws, and domain randomisation (dynamics, sensing, visuals)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import (
    Field,
    Strict,
    field_validator,
    model_validator,
)

from scenarios.schema.fields import NonNegFloat, Range, Strict_, Unit, Vec3, check_range

NonNegInt = Annotated[int, Strict(), Field(ge=0)]
# A multiplier range [low, high]: nominal 1, low > 0, high at most 10. Ten times is another part or robot, not
# a spread: a link mass scale of 1e30 ran without a word (20 collisions an episode, 0% success).
ScaleFactor = Annotated[float, Strict(), Field(gt=0, le=10)]
Scale = tuple[ScaleFactor, ScaleFactor]
# A std of noise in a feature's own unit (m, rad, m/s), at most 10: beyond a cell's size a reading carries nothing,
# and 1e300 overflowed numpy at every step.
NoiseStd = Annotated[float, Strict(), Field(ge=0, le=10)]
# Whole control periods [low, high], at most 1000 (50 s at 20 Hz): each is a slot of a FIFO made at every reset, and
# a delay of 1e9 periods took 42 s and gigabytes per reset.
PeriodCount = Annotated[int, Strict(), Field(ge=0, le=1000)]
Periods = tuple[PeriodCount, PeriodCount]
# N m s/rad added to a joint, at most 100: 20 already stops the GP7's conveyor-pick expert (5: still 100%).
Damping = Annotated[float, Strict(), Field(ge=0, le=100)]


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
            check_range(value, info.field_name)
        return value


class DynamicsRandomization(_Factors):
    """Physics of parts and robot. Parts draw theirs when they spawn, the robot at each reset."""

    part_mass_scale: Optional[Scale] = Field(None, description="multiplier on each part's mass (and inertia), per part")
    part_friction_scale: Optional[Scale] = Field(None, description="multiplier on each part's lateral friction coefficient, per part")
    part_restitution: Optional[tuple[Unit, Unit]] = Field(
        None, description="each part's restitution (unitless, 0-1; absolute, PyBullet's nominal is 0), per part; Bullet "
                           "multiplies both bodies' restitution in a contact, so a surface at 0 still absorbs the bounce")
    link_mass_scale: Optional[Scale] = Field(None, description="multiplier on each robot link's mass (and inertia), per link")
    joint_damping: Optional[tuple[Damping, Damping]] = Field(
        None, description="N m s/rad added to each arm joint's damping (at most 100), per joint")
    position_gain_scale: Optional[Scale] = Field(None, description="multiplier on robot.position_gain (PyBullet's), per arm joint")
    velocity_gain_scale: Optional[Scale] = Field(None, description="multiplier on robot.velocity_gain (PyBullet's), per arm joint")
    actuator_delay: Optional[Periods] = Field(
        None, description="whole control periods each command is held back before the motors get it (a FIFO), per episode")


class SensingRandomization(_Factors):
    """What the policy sees; never rewards, success or KPIs (the simulator's truth)."""

    noise: Optional[dict[str, NoiseStd]] = Field(
        None, description="observation feature name (as in env.feature_spec()) -> std of Gaussian noise in that feature's "
                          "own unit (m, rad, m/s...; at most 10), added each step; names are checked when the env is built")
    latency: Optional[Periods] = Field(
        None, description="whole control periods from a camera frame being taken to the policy seeing it (exposure, transfer, "
                           "processing), per episode; state mode, which has no camera, sees the task's features that late; the "
                           "robot's own readings and commanded target are never late")
    frame_drop: Optional[Unit] = Field(
        None, description="probability (0-1) that a pixels/perception camera frame is not delivered and the previous one repeats")


class VisualRandomization(_Factors):
    """How the cell looks to its cameras, drawn per episode."""

    light_azimuth: Optional[NonNegFloat] = Field(
        None, description="rad: the light turns about the vertical by up to +-this (uniform; pi or more: from any side), "
                          "before light_direction's tilt")
    light_direction: Optional[NonNegFloat] = Field(None, le=1.5708, description="rad: the light direction is tilted by up to this (uniform)")
    light_color_scale: Optional[Scale] = Field(None, description="gain per RGB channel of the light's colour")
    ambient_scale: Optional[Scale] = Field(None, description="multiplier on the ambient light coefficient")
    diffuse_scale: Optional[Scale] = Field(
        None, description="multiplier on the diffuse coefficient: how strongly the directional light shades surfaces "
                          "turned to it (a lamp's strength), clipped to 1")
    specular: Optional[tuple[NonNegFloat, NonNegFloat]] = Field(
        None, description="added to the specular coefficient (the highlights glossy paint and metal throw), the sum clipped to 1")
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
            check_range(getattr(self, name), name)
        for lo, hi in zip(self.goal_low, self.goal_high):
            if lo > hi:
                raise ValueError(f"goal_low must be <= goal_high per axis, got {list(self.goal_low)} / {list(self.goal_high)}")
        return self
