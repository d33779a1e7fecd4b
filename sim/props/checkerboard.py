"""A calibration checkerboard in a running cell: a printed `Checkerboard` as a textured quad, and where to hold it.

The prop is visual only (no collision shape, no mass): showing it to a camera never disturbs the cell's
physics. Its pose is the board frame of perception.calibration (origin at the first inner corner, z into
the board, the printed face looking towards -z), so `board_pose()` is what `camera_pose_from_board`
takes. Remove it before the env resets: Bullet restores a saved state only into the same bodies.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pybullet as pb

from perception.calibration import Checkerboard
from perception.camera_model import PinholeCamera
from sim.camera_pose import quaternion_matrix
from sim.errors import SimError
from sim.simulator import Simulator

# A board lying on a surface floats this far (m) above it, so the two never z-fight in an image.
LIFT = 0.001


class CheckerboardProp:
    """The board image (`board.image(pixels_per_square, margin)`) on a quad of its printed size."""

    def __init__(self, sim: Simulator, board: Checkerboard, pose: Optional[tuple[np.ndarray, np.ndarray]] = None, *,
                 pixels_per_square: int = 32, margin: Optional[int] = None):
        self.sim, self.board = sim, board
        cid = sim.cid
        with tempfile.TemporaryDirectory(prefix="genba-board-") as folder:  # Bullet reads the PNG once, at load
            texture = Path(folder) / "board.png"
            cv2.imwrite(str(texture), cv2.cvtColor(board.image(pixels_per_square, margin), cv2.COLOR_GRAY2BGR))
            self._texture = pb.loadTexture(str(texture), physicsClientId=cid)
        if self._texture < 0:
            raise SimError("PyBullet could not load the checkerboard texture")
        # An explicit mesh with texture coordinates: the CPU renderer draws a textured GEOM_BOX untextured, and a
        # URDF box repeats the texture on every face in an orientation of its own. The image's top-left corner has
        # texture coordinate (0, 1) (texture v runs up the image), and the triangles wind counter-clockwise seen
        # from the printed side (board -z), or the renderer culls them.
        outline = board.image_outline(pixels_per_square, margin)  # top-left, top-right, bottom-right, bottom-left
        shape = pb.createVisualShape(pb.GEOM_MESH, vertices=outline.tolist(), indices=[0, 2, 1, 0, 3, 2],
                                     uvs=[[0, 1], [1, 1], [1, 0], [0, 0]], normals=[[0.0, 0.0, -1.0]] * 4, physicsClientId=cid)
        R, t = pose if pose is not None else lying_flat(board, (0.0, 0.0, -1.0))  # out of sight until placed
        self.body = pb.createMultiBody(0.0, -1, shape, list(map(float, t)), _quaternion(R), physicsClientId=cid)
        pb.changeVisualShape(self.body, -1, textureUniqueId=self._texture, rgbaColor=[1, 1, 1, 1], physicsClientId=cid)
        self.outline = outline

    def place(self, R: np.ndarray, t: np.ndarray) -> None:
        """Put the board at (R, t): X_world = R @ X_board + t (t: the first inner corner in the world, m)."""
        self._alive()
        pb.resetBasePositionAndOrientation(self.body, list(map(float, t)), _quaternion(R), physicsClientId=self.sim.cid)

    def board_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(R board -> world, t) as Bullet holds it now: the surveyed pose camera_pose_from_board takes."""
        self._alive()
        pos, orn = pb.getBasePositionAndOrientation(self.body, physicsClientId=self.sim.cid)
        return quaternion_matrix(orn), np.asarray(pos, dtype=np.float64)

    def remove(self) -> None:
        if self.body is not None and self.sim.cid >= 0:
            pb.removeBody(self.body, physicsClientId=self.sim.cid)
        self.body = None

    def _alive(self) -> None:
        if self.body is None:
            raise SimError("the checkerboard was removed from the cell")


def _quaternion(R: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix, via OpenCV's axis-angle (no branch cases to get wrong)."""
    rvec, _ = cv2.Rodrigues(np.asarray(R, dtype=np.float64))
    angle = float(np.linalg.norm(rvec))
    axis = rvec.reshape(3) / angle if angle > 1e-12 else np.zeros(3)
    s = math.sin(angle / 2.0)
    return [*(axis * s).tolist(), math.cos(angle / 2.0)]


def rotation_about(axis, angle: float) -> np.ndarray:
    """The 3x3 rotation by `angle` rad about `axis` (any length)."""
    rvec = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis) * angle
    return cv2.Rodrigues(rvec)[0]


def board_centre(board: Checkerboard) -> np.ndarray:
    """The middle of the inner-corner grid (board frame, m): also the middle of the printed sheet."""
    return np.array([(board.cols - 1) / 2.0, (board.rows - 1) / 2.0, 0.0]) * board.square


def lying_flat(board: Checkerboard, centre, yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Board -> world (R, t) of the board lying printed face up, its middle at `centre` (m, world), its x axis
    turned `yaw` (rad) from world x."""
    R = rotation_about([0, 0, 1], yaw) @ np.diag([1.0, -1.0, -1.0])  # face up: the board's z points down
    return R, np.asarray(centre, dtype=np.float64) - R @ board_centre(board)


def facing(camera: PinholeCamera, board: Checkerboard, pixel, distance: float, tilt: float = 0.0, tilt_axis: float = 0.0,
           spin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Board -> world (R, t) of the board held up to `camera`: its middle on the ray through `pixel`, `distance` m
    along the optical axis; upright and square to the camera, then turned `spin` rad about its normal and tilted
    `tilt` rad about an in-plane axis at `tilt_axis` rad from the image's x axis."""
    axis = [math.cos(tilt_axis), math.sin(tilt_axis), 0.0]
    R_cam = rotation_about(axis, tilt) @ rotation_about([0, 0, 1], spin)  # board -> camera; identity = upright
    xy = camera.normalized(np.asarray(pixel, dtype=np.float64).reshape(1, 2))[0]
    centre_cam = np.array([xy[0], xy[1], 1.0]) * distance
    R = camera.R.T @ R_cam
    centre = camera.R.T @ (centre_cam - camera.t)
    return R, centre - R @ board_centre(board)


def surface_points(board: Checkerboard, pose: tuple[np.ndarray, np.ndarray], outline: np.ndarray, n: int = 9) -> np.ndarray:
    """(n * n, 3) world points spread over the printed sheet (its corners among them)."""
    R, t = pose
    s = np.linspace(0.0, 1.0, n)
    a, b = np.meshgrid(s, s)
    top_left, top_right, _, bottom_left = outline
    local = top_left + a.reshape(-1, 1) * (top_right - top_left) + b.reshape(-1, 1) * (bottom_left - top_left)
    return local @ R.T + t


def in_clear_view(camera: PinholeCamera, points: np.ndarray, scene_depth: np.ndarray, clearance: float,
                  margin_px: float = 2.0) -> bool:
    """Whether every world point projects into the image, `margin_px` from its edge, and lies at least `clearance`
    m (along the optical axis) in front of the scene of `scene_depth` (m, the camera's depth without the board).
    A negative clearance lets a point lie that far behind it: a board lying on the surface of the depth image."""
    cam = camera.to_camera(points)
    if np.any(cam[:, 2] <= 1e-6):
        return False
    pixels = camera.project(points)
    h, w = scene_depth.shape
    if np.any(pixels < margin_px) or np.any(pixels[:, 0] > w - 1 - margin_px) or np.any(pixels[:, 1] > h - 1 - margin_px):
        return False
    u, v = np.rint(pixels).astype(int).T
    return bool(np.all(cam[:, 2] <= scene_depth[v, u] - clearance))


def held_pose(camera: PinholeCamera, board: Checkerboard, outline: np.ndarray, scene_depth: np.ndarray,
              rng: np.random.Generator, *, tilt: tuple[float, float] = (0.25, 0.7), spin: float = 0.5,
              distance: tuple[float, float] = (1.1, 1.6), clearance: float = 0.03, tries: int = 2000,
              tilt_axis: tuple[float, float] = (0.0, 2.0 * math.pi)) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """A random pose of the board held up to `camera` as a technician does for calibration: tilted `tilt` rad
    about an in-plane axis at `tilt_axis` rad from the image's x axis, turned up to `spin` rad, at `distance`
    times the distance where the upright board just fills the view, off the middle of the image as far as that
    leaves room; wholly in view and `clearance` m in front of the scene. Each range is drawn from uniformly.
    None when `tries` draws found no such pose (a board too big for the camera, or the cell too close to it)."""
    width, height = np.linalg.norm(outline[1] - outline[0]), np.linalg.norm(outline[3] - outline[0])
    fills = max(camera.fx * width / camera.width, camera.fy * height / camera.height)
    half = np.array([(camera.width - 1) / 2.0, (camera.height - 1) / 2.0])
    for _ in range(tries):
        scale = rng.uniform(*distance)
        room = max(0.0, 1.0 - 0.9 / scale)  # of the half-image, left beside a board this far away (a little more: tilt)
        pixel = half + rng.uniform(-room, room, 2) * half
        pose = facing(camera, board, pixel, fills * scale, tilt=rng.uniform(*tilt),
                      tilt_axis=rng.uniform(*tilt_axis), spin=rng.uniform(-spin, spin))
        if in_clear_view(camera, surface_points(board, pose, outline), scene_depth, clearance):
            return pose
    return None


def surveyed_place(camera: PinholeCamera, board: Checkerboard, outline: np.ndarray, scene_depth: np.ndarray,
                   surface_z: float, grid: int = 9) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Where a technician lays the board on the work surface at height `surface_z` (m) for the pose step: squared
    to the cell's axes, as near the middle of the image as it lies wholly in view with nothing over it. None
    when no such place exists."""
    u, v = np.meshgrid(np.linspace(0.0, camera.width - 1.0, grid), np.linspace(0.0, camera.height - 1.0, grid))
    pixels = np.stack([u.ravel(), v.ravel()], axis=1)
    middle = np.array([(camera.width - 1) / 2.0, (camera.height - 1) / 2.0])
    pixels = np.concatenate([[middle], pixels[np.argsort(np.linalg.norm(pixels - middle, axis=1), kind="stable")]])
    for ray in camera.rays(pixels):
        if abs(ray[2]) < 1e-6:
            continue  # this ray never meets the surface
        centre = camera.position + ray * (surface_z + LIFT - camera.position[2]) / ray[2]
        for yaw in (0.0, math.pi / 2):
            pose = lying_flat(board, centre, yaw)
            # Depth images are float32: allow the lifted board to read a few mm behind the surface under it.
            if in_clear_view(camera, surface_points(board, pose, outline), scene_depth, clearance=-0.005):
                return pose
    return None


def photograph(sim: Simulator, camera: PinholeCamera, near: float, far: float, supersample: int = 4) -> np.ndarray:
    """RGB uint8 (H, W, 3) through `camera` (no lens distortion), each pixel the mean over supersample x
    supersample samples. The CPU renderer samples one point a pixel, so a board's sharp edges alias to whole
    pixels; a real sensor integrates the light over each pixel, and so does this (1: the renderer's own frame)."""
    k = int(supersample)
    if k < 1:
        raise SimError(f"supersample must be a whole number >= 1, got {supersample}")
    if k == 1:
        return sim.render_image(camera, near, far)[0]
    # Pixel centres sit at integer coordinates, so k-times finer pixels map u -> (u + 0.5) * k - 0.5.
    fine = PinholeCamera(camera.width * k, camera.height * k, camera.fx * k, camera.fy * k, (camera.cx + 0.5) * k - 0.5,
                         (camera.cy + 0.5) * k - 0.5, camera.R, camera.t)
    rgb = sim.render_image(fine, near, far)[0]
    return cv2.resize(rgb, (camera.width, camera.height), interpolation=cv2.INTER_AREA)  # block means at a whole factor
