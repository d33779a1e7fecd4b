"""A scenario camera as a `PinholeCamera`: intrinsics from fov or fx/fy/cx/cy, pose from the orbit form,
position/look_at, or a robot link's frame. Pure geometry (numpy), no simulator."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from perception.camera_model import PinholeCamera, look_at_rotation
from scenarios.schema import CameraConfig, CameraMount
from sim.errors import SimError


class CameraError(SimError):
    """A camera that does not exist, cannot be placed or cannot render."""


def intrinsics(config: CameraConfig, width: int | None = None, height: int | None = None) -> PinholeCamera:
    """The camera's intrinsics at the identity pose; another image size scales fx/fy/cx/cy with it."""
    w, h = width or config.width, height or config.height
    k = config.intrinsics
    if k is None:
        return PinholeCamera.from_fov(w, h, config.fov)
    sx, sy = w / config.width, h / config.height
    cx = k.cx if k.cx is not None else (config.width - 1) / 2.0
    cy = k.cy if k.cy is not None else (config.height - 1) / 2.0
    # Pixel centres sit at integer coordinates, so a rescale maps u -> (u + 0.5) * s - 0.5.
    return PinholeCamera(w, h, k.fx * sx, k.fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


def orbit_eye_and_up(target: Sequence[float], distance: float, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre and image-up direction of PyBullet's orbit camera (computeViewMatrixFromYawPitchRoll, z up, no roll).

    Up is the derivative of the viewing direction along pitch: never parallel to it, even looking straight down.
    """
    cp, sp, cyaw, syaw = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    eye = np.asarray(target, dtype=np.float64) + distance * np.array([cp * syaw, -cp * cyaw, -sp])
    return eye, np.array([sp * syaw, -sp * cyaw, cp])


def fixed_model(config: CameraConfig, width: int | None = None, height: int | None = None) -> PinholeCamera:
    """A fixed camera (orbit or position/look_at) as a PinholeCamera; a mounted one needs `mounted_model`."""
    cam = intrinsics(config, width, height)
    if config.placement == "look_at":
        return cam.looking_at(config.position, config.look_at, config.up)
    if config.placement == "orbit":
        eye, up = orbit_eye_and_up(config.target, config.distance, config.yaw, config.pitch)
        return cam.looking_at(eye, config.target, up)
    raise CameraError(f"camera {config.name!r} is mounted on link {config.mount.link!r}: its pose needs the robot (sim.sensors.CameraSensor)")


def mount_in_link(mount: CameraMount) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) mapping link-frame points into the camera frame (OpenCV axes)."""
    R = look_at_rotation(mount.position, mount.look_at, mount.up)
    return R, -R @ np.asarray(mount.position, dtype=np.float64)


def mounted_model(cam: PinholeCamera, mount_R: np.ndarray, mount_t: np.ndarray,
                  link_position: Sequence[float], link_quaternion: Sequence[float]) -> PinholeCamera:
    """The camera `cam` (intrinsics) carried by a link at the given world pose (quaternion x, y, z, w)."""
    R_wl = quaternion_matrix(link_quaternion)  # link -> world
    p = np.asarray(link_position, dtype=np.float64)
    # X_cam = R_m (R_wl^T (X - p)) + t_m
    R = mount_R @ R_wl.T
    return cam.with_pose(R, mount_t - R @ p)


def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
