"""Cameras: placement (orbit, look-at or mounted on a link), intrinsics, noise, what each feeds."""

from __future__ import annotations

from typing import Optional

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from scenarios.naming import did_you_mean
from scenarios.schema.fields import Float, Int, NonNegFloat, PosFloat, Strict_, Vec3

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
