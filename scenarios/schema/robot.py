"""The robot section: the arm (built-in model or a URDF), its tool, wrist F/T sensor and compliant mode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from scenarios.naming import ROBOT_MODELS, did_you_mean
from scenarios.schema.fields import Float, NonNegFloat, PosFloat, Strict_, Vec3
from scenarios.urdf import ArmChain, arm_chain, read_urdf


class ToolMount(Strict_):
    """Where genba mounts its tool on a robot given by URDF (robot.urdf; a built-in model brings its own mount).

    The tool frame is the flange link's frame moved by mount_xyz / mount_rpy: its z must point out of the
    flange (the approach direction). Without mount_rpy (and robot.home), it is turned about that z so the
    tool's x faces the base's x at home.
    """

    mount_xyz: Vec3 = Field((0.0, 0.0, 0.0), description="urdf: tool frame origin in the flange link's frame (m)")
    mount_rpy: Optional[Vec3] = Field(
        None, description="urdf: tool frame orientation in the flange link's frame (rad, URDF roll-pitch-yaw); default: the "
                          "flange's, turned about its z so that the tool faces the base's x at home")

    @property
    def mount_given(self) -> bool:
        return self.mount_rpy is not None or tuple(self.mount_xyz) != (0.0, 0.0, 0.0)


class ToolConfig(ToolMount):
    """The tool genba mounts on a robot given by URDF (robot.urdf): a generic parallel-jaw gripper.

    The same gripper as the GP7's (sim/assets/gp7): 0.7 kg body, two 0.08 kg jaws sliding along the
    tool frame's y, the tool point 0.121 m out along its z.
    """

    type: Literal["parallel_gripper"] = "parallel_gripper"
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


class SuctionToolConfig(ToolMount):
    """A vacuum suction cup in place of the gripper (robot.tool: {type: suction}): on the GP7 or a robot given by urdf.

    The GP7's suction tool (sim/assets/gp7): a 0.35 kg adapter and ejector body, a 0.03 kg cup, its face
    0.121 m out along the tool frame's z, where the gripper's tool point would be.

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
# Built-in models that can carry a suction cup in place of their gripper (robot.tool: {type: suction}); any robot
# given by urdf can.
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
                                                   "{type: suction} (a vacuum cup; gp7 or a robot given by urdf)")
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
        if isinstance(self.tool, SuctionToolConfig) and self.model is not None:
            if self.tool.mount_given:
                raise ValueError(f"robot.tool.mount_xyz / mount_rpy apply to a robot given by urdf; the built-in model "
                                 f"{self.model!r} brings its own tool mount")
            if self.model not in SUCTION_MODELS:
                raise ValueError(f"robot.tool type 'suction': the built-in model {self.model!r} has no suction variant; "
                                 f"models with one: {', '.join(SUCTION_MODELS)}; any arm given by robot.urdf can carry one")
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
