"""Camera calibration as on a real line: a printed checkerboard, intrinsics from several views of it,
the camera's pose from one view of the board laid at a known place, and the result kept as JSON.

Board frame (OpenCV's): origin at the first inner corner, x along a row of inner corners (`cols` of
them), y down the columns (`rows`), z into the board, so the printed face looks towards -z. In
`Checkerboard.image` x runs right and y down, and the square diagonally outside the first inner
corner is black. A board with an even number of squares one way and an odd number the other looks
different turned half a turn, so its corners, hence its pose, come in one order only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from perception.camera_model import PinholeCamera
from perception.errors import CalibrationError, PerceptionError


@dataclass(frozen=True)
class Checkerboard:
    """A checkerboard of cols x rows inner corners, `square` metres apart."""

    cols: int
    rows: int
    square: float

    def __post_init__(self) -> None:
        if int(self.cols) != self.cols or int(self.rows) != self.rows or self.cols < 2 or self.rows < 2:
            raise PerceptionError(f"a checkerboard needs at least 2 x 2 inner corners, got {self.cols} x {self.rows}")
        if (self.cols + self.rows) % 2 == 0:
            raise PerceptionError(f"a {self.cols} x {self.rows} board looks the same turned half a turn; use inner "
                                  f"corner counts of which one is even and one odd (e.g. {self.cols} x {self.rows + 1})")
        if not (self.square > 0 and math.isfinite(self.square)):
            raise PerceptionError(f"the checkerboard's square size must be positive (m), got {self.square}")

    @property
    def pattern_size(self) -> tuple[int, int]:
        """(cols, rows) as OpenCV's corner finders take it."""
        return int(self.cols), int(self.rows)

    def object_points(self) -> np.ndarray:
        """(cols * rows, 3) inner corners in the board frame (m, z = 0), row by row: OpenCV's order."""
        ys, xs = np.mgrid[0:self.rows, 0:self.cols]
        return np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1) * self.square

    def image(self, pixels_per_square: int = 40, margin: Optional[int] = None) -> np.ndarray:
        """The board as a uint8 grey image: (cols + 1) x (rows + 1) squares in a white margin (default one square).

        Print it at `square` metres per `pixels_per_square` pixels, or use it as a simulator texture.
        """
        pps = int(pixels_per_square)
        margin = pps if margin is None else int(margin)
        if pps < 2 or margin < 0:
            raise PerceptionError(f"a board image needs at least 2 pixels per square and a margin >= 0, got {pps}, {margin}")
        squares = (np.indices((self.rows + 1, self.cols + 1)).sum(axis=0) % 2) * 255  # black where x + y is even
        board = np.kron(squares, np.ones((pps, pps))).astype(np.uint8)
        return cv2.copyMakeBorder(board, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)

    def image_outline(self, pixels_per_square: int = 40, margin: Optional[int] = None) -> np.ndarray:
        """(4, 3) board-frame points (m) of `image`'s top-left, top-right, bottom-right and bottom-left corners.

        Where the printed sheet's corners lie, or where a texture's corners go.
        """
        pps = int(pixels_per_square)
        margin = pps if margin is None else int(margin)
        metres_per_pixel = self.square / pps
        left = top = -(margin + pps) * metres_per_pixel  # the first inner corner is one square in from the margin
        right = left + ((self.cols + 1) * pps + 2 * margin) * metres_per_pixel
        bottom = top + ((self.rows + 1) * pps + 2 * margin) * metres_per_pixel
        return np.array([[left, top, 0.0], [right, top, 0.0], [right, bottom, 0.0], [left, bottom, 0.0]])


@dataclass(frozen=True, eq=False)
class Calibration:
    """What cv2.calibrateCamera found: K, distortion (k1, k2, p1, p2, k3), RMS reprojection error (px),
    the image size (width, height) and the indices of the views in which the board was found."""

    K: np.ndarray
    dist: np.ndarray
    rms: float
    image_size: tuple[int, int]
    views_used: tuple[int, ...]

    def camera(self, R: Optional[np.ndarray] = None, t: Optional[np.ndarray] = None) -> PinholeCamera:
        """These intrinsics as a PinholeCamera, at pose (R, t) (world -> camera; default the identity)."""
        w, h = self.image_size
        return PinholeCamera(w, h, self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2],
                             np.eye(3) if R is None else R, np.zeros(3) if t is None else t, self.dist)


# ---------------------------------------------------------------------- corners

# The sector-based finder, then cornerSubPix: on small squares (7-13 px on a 160x120 camera) the finder's
# own sub-pixel corners lean one way and pulled fx 1.5-3.5% low; refined, fx was within 0.5% (anti-aliased
# frames, as a real sensor gives). The classic finder as a fallback.
_SB_FLAGS = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
_CLASSIC_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE


def find_corners(image: np.ndarray, board: Checkerboard) -> Optional[np.ndarray]:
    """(cols * rows, 2) sub-pixel inner corners of `board` in `image` (grey or RGB uint8), in
    `board.object_points()` order; None when the whole board is not in view."""
    gray = _gray(image, "the calibration image")
    found, corners = cv2.findChessboardCornersSB(gray, board.pattern_size, flags=_SB_FLAGS)
    if not found:  # the classic finder copes with some views SB misses (coarse, blurred)
        found, corners = cv2.findChessboardCorners(gray, board.pattern_size, flags=_CLASSIC_FLAGS)
        if not found:
            return None
    return _in_board_order(gray, _refine(gray, corners.reshape(-1, 2), board), board)


def _gray(image: np.ndarray, what: str) -> np.ndarray:
    grey_or_rgb = isinstance(image, np.ndarray) and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
    if not grey_or_rgb or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PerceptionError(f"{what} must be a grey (H, W) or RGB (H, W, 3) uint8 array, got {got}")
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _refine(gray: np.ndarray, corners: np.ndarray, board: Checkerboard) -> np.ndarray:
    """Corners to sub-pixel, with a search window under half the smallest corner spacing (so it holds one corner)."""
    grid = corners.reshape(board.rows, board.cols, 2)
    spacing = min(np.linalg.norm(np.diff(grid, axis=1), axis=2).min(), np.linalg.norm(np.diff(grid, axis=0), axis=2).min())
    half = int(max(2, min(11, spacing * 0.4)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    refined = cv2.cornerSubPix(gray, corners.astype(np.float32).reshape(-1, 1, 2), (half, half), (-1, -1), criteria)
    return refined.reshape(-1, 2).astype(np.float64)


def _in_board_order(gray: np.ndarray, corners: np.ndarray, board: Checkerboard) -> np.ndarray:
    """The finders may start at either end of the board; start where the diagonal square is black."""
    grid = corners.reshape(board.rows, board.cols, 2)
    first, along_x, along_y = grid[0, 0], grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
    diagonal = first + 0.5 * (along_x + along_y)  # centre of square (1, 1): black in board order
    beside = first + 0.5 * (along_x - along_y)  # centre of square (1, 0): white
    if _mean_around(gray, diagonal) > _mean_around(gray, beside):
        return corners[::-1].copy()  # turned half a turn: the far end came first
    return corners


def _mean_around(gray: np.ndarray, point: np.ndarray) -> float:
    patch = cv2.getRectSubPix(gray, (3, 3), (float(point[0]), float(point[1])))
    return float(patch.mean())


# ---------------------------------------------------------------------- calibration


def calibrate_intrinsics(images: Iterable[np.ndarray], board: Checkerboard, flags: int = cv2.CALIB_FIX_K3) -> Calibration:
    """K and distortion from views of `board` (grey or RGB uint8, all one size) by cv2.calibrateCamera.

    flags: OpenCV's calibration flags; by default k3 is held at 0 (a lens short of a fisheye does
    not need it, and a few views overfit it). At least 3 views must show the whole board.
    """
    object_points, image_points, used, size = [], [], [], None
    count = 0
    for index, image in enumerate(images):
        count += 1
        gray = _gray(image, f"calibration image {index}")
        if size is None:
            size = (gray.shape[1], gray.shape[0])
        elif (gray.shape[1], gray.shape[0]) != size:
            raise PerceptionError(f"calibration image {index} is {gray.shape[1]}x{gray.shape[0]}; the first was {size[0]}x{size[1]}")
        corners = find_corners(gray, board)
        if corners is not None:
            object_points.append(board.object_points().astype(np.float32))
            image_points.append(corners.astype(np.float32).reshape(-1, 1, 2))
            used.append(index)
    if len(used) < 3:
        raise CalibrationError(f"calibration needs the whole {board.cols}x{board.rows} board in at least 3 views; "
                               f"it was found in {len(used)} of {count}")
    rms, K, dist, _, _ = cv2.calibrateCamera(object_points, image_points, size, None, None, flags=flags)
    return Calibration(np.asarray(K, dtype=np.float64), np.asarray(dist, dtype=np.float64).reshape(-1)[:5], float(rms),
                       size, tuple(used))


def camera_pose_from_board(image: np.ndarray, board: Checkerboard, K: np.ndarray, dist: Optional[np.ndarray],
                           board_pose: tuple[np.ndarray, np.ndarray]) -> PinholeCamera:
    """The camera (intrinsics K, dist) placed in the world, from one view of `board` lying at a known pose.

    board_pose: (R, t) with X_world = R @ X_board + t (t: the first inner corner in the world, m).
    solvePnP gives board -> camera; composed with board -> world it is the world -> camera pose.
    """
    gray = _gray(image, "the board image")
    R_board, t_board = (np.asarray(v, dtype=np.float64) for v in board_pose)
    if R_board.shape != (3, 3) or not np.allclose(R_board @ R_board.T, np.eye(3), atol=1e-6) or np.linalg.det(R_board) <= 0:
        raise PerceptionError("board_pose's R must be a 3x3 rotation matrix (board -> world)")
    if t_board.shape != (3,):
        raise PerceptionError(f"board_pose's t must be 3 numbers (the board origin in the world, m), got shape {t_board.shape}")
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    dist = np.zeros(5) if dist is None else np.asarray(dist, dtype=np.float64).reshape(-1)
    corners = find_corners(gray, board)
    if corners is None:
        raise CalibrationError(f"the {board.cols}x{board.rows} checkerboard is not (wholly) in view in the board image")
    ok, rvec, tvec = cv2.solvePnP(board.object_points(), corners, K, dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError("solvePnP found no camera pose for the board's corners")
    rvec, tvec = cv2.solvePnPRefineLM(board.object_points(), corners, K, dist, rvec, tvec)
    R_cam_board, _ = cv2.Rodrigues(rvec)
    R = R_cam_board @ R_board.T  # world -> board -> camera
    t = tvec.reshape(3) - R @ t_board
    h, w = gray.shape
    return PinholeCamera(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2], R, t, dist)


# ---------------------------------------------------------------------- files


def save_calibration(path: str | Path, camera: PinholeCamera, rms: Optional[float] = None) -> None:
    """Write the camera (image size, K, dist, R, t) and the calibration's RMS error (px) as JSON."""
    Path(path).write_text(json.dumps({"camera": camera.to_dict(), "rms": None if rms is None else float(rms)}, indent=2) + "\n")


def load_calibration(path: str | Path) -> tuple[PinholeCamera, Optional[float]]:
    """(camera, rms) from a file `save_calibration` wrote."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"no calibration file at {path}")
    try:
        data = json.loads(path.read_text())
        camera, rms = data["camera"], data.get("rms")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path} is not a calibration file (JSON with a 'camera'): {exc}") from None
    try:
        return PinholeCamera.from_dict(camera), None if rms is None else float(rms)
    except PerceptionError as exc:
        raise CalibrationError(f"{path}: {exc}") from None
