"""A pinhole camera in OpenCV's calibration convention: what a real line's calibration gives.

Intrinsics K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels, with (0, 0) the centre of the
top-left pixel and v growing downwards; distortion coefficients (k1, k2, p1, p2, k3) as
cv2.calibrateCamera returns them. Extrinsics R, t map a world point into the camera frame,
X_cam = R @ X_world + t, whose axes are x right, y down and z forward (the optical axis), as
cv2.solvePnP returns them (R from its rvec). The simulator renders through the same model
(`opengl_view_matrix`, `opengl_projection_matrix`), so what the sim shows and what the pipeline
assumes are one camera.

numpy only (OpenCV for distortion when the coefficients are not all zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from perception.errors import PerceptionError

# OpenGL's camera looks down its -z axis with y up; OpenCV's looks down +z with y down.
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0])
# Where a renderer samples pixel (u, v), relative to its centre (pixels, v down): TinyRenderer
# rasterises at integer window coordinates, i.e. pixel corners (measured: plate centroids sit
# +0.5 px in u and -0.5 px in v from project() without this).
_PIXEL_SAMPLE_OFFSET = {"tiny": (-0.5, 0.5), "opengl": (0.0, 0.0)}


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    width: int  # pixels
    height: int
    fx: float  # focal lengths in pixels
    fy: float
    cx: float  # principal point in pixels
    cy: float
    R: np.ndarray = field(default_factory=lambda: np.eye(3))  # world -> camera rotation
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))  # world -> camera translation (m)
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))  # k1, k2, p1, p2, k3

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.height) < 1:
            raise PerceptionError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0) or not all(map(math.isfinite, (self.fx, self.fy, self.cx, self.cy))):
            raise PerceptionError(f"focal lengths must be positive and finite, got fx {self.fx}, fy {self.fy}")
        R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) <= 0:
            raise PerceptionError("R must be a rotation matrix (orthonormal, determinant +1)")
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", np.asarray(self.t, dtype=np.float64).reshape(3))
        object.__setattr__(self, "dist", np.asarray(self.dist, dtype=np.float64).reshape(-1))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y: float, **extrinsics: Any) -> PinholeCamera:
        """Square pixels, principal point at the image centre, vertical field of view fov_y (rad)."""
        if not 0.0 < fov_y < math.pi:
            raise PerceptionError(f"vertical field of view must be in (0, pi) rad, got {fov_y}")
        f = (height / 2.0) / math.tan(fov_y / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, **extrinsics)

    def with_pose(self, R: np.ndarray, t: np.ndarray) -> PinholeCamera:
        """The same intrinsics at another pose."""
        return PinholeCamera(self.width, self.height, self.fx, self.fy, self.cx, self.cy, R, t, self.dist)

    def looking_at(self, eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> PinholeCamera:
        """The same intrinsics placed at `eye`, its optical axis through `target`; `up` points up in the image."""
        R = look_at_rotation(eye, target, up)
        return self.with_pose(R, -R @ np.asarray(eye, dtype=np.float64))

    # ------------------------------------------------------------------ properties

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        """The camera centre in world coordinates (m)."""
        return -self.R.T @ self.t

    @property
    def fov_y(self) -> float:
        return 2.0 * math.atan((self.height / 2.0) / self.fy)

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.dist != 0.0))

    # ------------------------------------------------------------------ geometry

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points in the camera frame."""
        return np.asarray(points_world, dtype=np.float64).reshape(-1, 3) @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates of (N, 3) world points (in front of the camera)."""
        pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        if self.distorted:
            rvec, _ = cv2.Rodrigues(self.R)
            pixels, _ = cv2.projectPoints(pts, rvec, self.t, self.K, self.dist)
            return pixels.reshape(-1, 2)
        cam = self.to_camera(pts)
        return np.stack([self.fx * cam[:, 0] / cam[:, 2] + self.cx, self.fy * cam[:, 1] / cam[:, 2] + self.cy], axis=1)

    def normalized(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) undistorted normalised image coordinates (x/z, y/z) of pixels."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        if self.distorted:
            return cv2.undistortPoints(px.reshape(-1, 1, 2), self.K, self.dist).reshape(-1, 2)
        return np.stack([(px[:, 0] - self.cx) / self.fx, (px[:, 1] - self.cy) / self.fy], axis=1)

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3) world directions (unit) of the rays through pixels, from `position`."""
        xy = self.normalized(pixels)
        cam = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        world = cam @ self.R  # R.T applied to each row
        return world / np.linalg.norm(world, axis=1, keepdims=True)

    def backproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(N, 3) world points at the given camera-z depths (m, along the optical axis) of pixels."""
        xy = self.normalized(pixels)
        z = np.asarray(depth, dtype=np.float64).reshape(-1, 1)
        cam = np.concatenate([xy * z, z], axis=1)
        return (cam - self.t) @ self.R  # R.T (cam - t), row-wise

    def intersect_plane(self, pixels: np.ndarray, z: float) -> np.ndarray:
        """(N, 3) world points where the rays through pixels meet the horizontal plane at height z (m)."""
        rays = self.rays(pixels)
        if np.any(np.abs(rays[:, 2]) < 1e-9):
            raise PerceptionError("a ray runs parallel to the plane: the camera sees it edge-on")
        s = (z - self.position[2]) / rays[:, 2]
        return self.position + rays * s[:, None]

    # ------------------------------------------------------------------ the simulator's side

    def opengl_view_matrix(self) -> list[float]:
        """The world -> eye matrix as PyBullet's getCameraImage takes it (16 floats, column-major)."""
        view = np.eye(4)
        view[:3, :3] = _GL_FROM_CV @ self.R
        view[:3, 3] = _GL_FROM_CV @ self.t
        return view.T.reshape(-1).tolist()

    def opengl_projection_matrix(self, near: float, far: float, renderer: str = "tiny") -> list[float]:
        """The projection matching these intrinsics (no distortion) for a width x height image, column-major.

        Pixel (u, v) of this model, v down, lands on pixel (u, v) of the rendered image, whose first
        row PyBullet returns at the top. renderer: "tiny" for PyBullet's CPU renderer
        (ER_TINY_RENDERER, what headless runs use), which samples each pixel half a pixel left of and
        below its centre, so the matrix shifts the image to match; "opengl" for a rasteriser that
        samples pixel centres (ER_BULLET_HARDWARE_OPENGL).
        """
        if not 0.0 < near < far:
            raise PerceptionError(f"clipping planes must satisfy 0 < near < far, got {near}, {far}")
        if renderer not in _PIXEL_SAMPLE_OFFSET:
            raise PerceptionError(f"renderer must be one of {', '.join(_PIXEL_SAMPLE_OFFSET)}, got {renderer!r}")
        du, dv = _PIXEL_SAMPLE_OFFSET[renderer]
        w, h = self.width, self.height
        proj = np.zeros((4, 4))
        proj[0, 0] = 2.0 * self.fx / w
        proj[1, 1] = 2.0 * self.fy / h
        proj[0, 2] = 1.0 - 2.0 * (self.cx + 0.5 + du) / w
        proj[1, 2] = 2.0 * (self.cy + 0.5 + dv) / h - 1.0
        proj[2, 2] = -(far + near) / (far - near)
        proj[2, 3] = -2.0 * far * near / (far - near)
        proj[3, 2] = -1.0
        return proj.T.reshape(-1).tolist()

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        """OpenCV's calibration output as JSON-able lists: image size, K, distortion, R and t (world -> camera)."""
        return {"width": int(self.width), "height": int(self.height), "K": self.K.tolist(), "dist": self.dist.tolist(),
                "R": self.R.tolist(), "t": self.t.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PinholeCamera:
        try:
            K = np.asarray(data["K"], dtype=np.float64).reshape(3, 3)
            return cls(int(data["width"]), int(data["height"]), K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                       np.asarray(data.get("R", np.eye(3)), dtype=np.float64), np.asarray(data.get("t", np.zeros(3)), dtype=np.float64),
                       np.asarray(data.get("dist", np.zeros(5)), dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise PerceptionError(f"not a camera description (width, height, K[, dist, R, t]): {exc}") from None


def look_at_rotation(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World -> camera rotation (OpenCV axes) of a camera at eye looking at target, `up` up in the image."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-12:
        raise PerceptionError("a camera cannot look at its own position")
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise PerceptionError(f"the up vector {up.tolist()} is parallel to the viewing direction; give another")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])
