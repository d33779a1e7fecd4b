"""Calibration as on a real line: a checkerboard rendered in PyBullet at known poses, seen by a known camera."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pybullet as pb
import pytest

from perception.calibration import (
    Calibration,
    Checkerboard,
    calibrate_intrinsics,
    camera_pose_from_board,
    find_corners,
    load_calibration,
    save_calibration,
)
from perception.camera_model import PinholeCamera
from perception.errors import CalibrationError, PerceptionError
from scenarios.schema import PhysicsConfig
from sim.props.checkerboard import CheckerboardProp, photograph
from sim.simulator import Simulator

BOARD = Checkerboard(7, 6, 0.03)  # 8 x 7 squares of 3 cm
PIXELS_PER_SQUARE, MARGIN = 32, 32
SUPERSAMPLE = 2  # each pixel the mean of 2x2 samples: edges blend as on a sensor, not alias to whole pixels
# The truth the calibration must find: fx != fy and an off-centre principal point, so nothing is assumed.
TRUE_CAMERA = PinholeCamera(320, 240, 300.0, 303.0, 161.3, 118.2).looking_at([0.05, -0.25, 0.4], [0.0, 0.0, 0.0], up=(0, 1, 0))


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    return np.array(pb.getMatrixFromQuaternion(pb.getQuaternionFromEuler([rx, ry, rz]))).reshape(3, 3)


def board_pose(rx: float, ry: float, rz: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Board -> world (R, t): face up (the board's z points down) turned by the given angles, its centre at (dx, dy, 0)."""
    R = rotation(math.pi + rx, ry, rz)
    centre = np.array([(BOARD.cols - 1) / 2, (BOARD.rows - 1) / 2, 0.0]) * BOARD.square
    return R, np.array([dx, dy, 0.0]) - R @ centre


# Tilts up to ~35 deg each way, turns, and shifts toward the image corners: what a technician waves in front of a camera.
POSES = [board_pose(*p) for p in [
    (0, 0, 0, 0, 0), (0.5, 0, 0.3, 0.05, 0.04), (-0.45, 0.3, -0.2, -0.05, -0.03), (0, 0.5, 0.5, 0.06, -0.04),
    (0.4, -0.45, 1.2, -0.06, 0.03), (-0.3, -0.4, -0.8, 0, 0.05), (0.2, 0.2, 2.5, -0.04, -0.05), (-0.5, -0.2, 0.1, 0.05, 0),
    (0.6, 0.3, -0.5, -0.03, 0.06), (-0.6, -0.3, 0.6, 0.03, -0.06), (0.1, 0.6, -1.4, 0.07, 0.02), (-0.1, -0.6, 1.7, -0.07, -0.02),
]]


@pytest.fixture(scope="module")
def views():
    """One rendered RGB frame of the board per pose in POSES, through TRUE_CAMERA: the sim's checkerboard prop."""
    sim = Simulator(PhysicsConfig())
    try:
        # Dark, well below the board: its white margin stands out.
        sim.create_box("floor", [4, 4, 0.02], [0, 0, -0.3], color=[0.35, 0.35, 0.35, 1])
        board = CheckerboardProp(sim, BOARD, pixels_per_square=PIXELS_PER_SQUARE, margin=MARGIN)
        frames = []
        for pose in POSES:
            board.place(*pose)
            frames.append(photograph(sim, TRUE_CAMERA, 0.05, 3.0, supersample=SUPERSAMPLE))
    finally:
        sim.close()
    return frames


@pytest.fixture(scope="module")
def calibration(views) -> Calibration:
    return calibrate_intrinsics(views, BOARD)


def world_corners(pose) -> np.ndarray:
    R, t = pose
    return BOARD.object_points() @ R.T + t


# ---------------------------------------------------------------------- the board


def test_board_image_has_the_black_square_outside_the_first_corner_and_the_finder_returns_board_order():
    image = BOARD.image(20, 10)
    assert image.shape == (7 * 20 + 20, 8 * 20 + 20) and image.dtype == np.uint8
    assert image[0, 0] == 255 and image[10 + 10, 10 + 10] == 0 and image[20, 10 + 30] == 255  # margin, square (0,0), (1,0)
    # Inner corner (c, r) lies on the pixel boundary margin + (c + 1) * pps, i.e. at pixel coordinate that - 0.5.
    want = BOARD.object_points()[:, :2] / BOARD.square * 20 + (10 + 20 - 0.5)
    np.testing.assert_allclose(find_corners(image, BOARD), want, atol=0.25)  # sub-pixel on a razor-sharp image
    # Turned half a turn, the board's first corner is still the one by the black outer square.
    turned = cv2.rotate(image, cv2.ROTATE_180)
    h, w = image.shape
    np.testing.assert_allclose(find_corners(turned, BOARD), [w - 1, h - 1] - want, atol=0.25)
    np.testing.assert_allclose(BOARD.object_points()[[0, 1, 7]], [[0, 0, 0], [0.03, 0, 0], [0, 0.03, 0]])


def test_image_outline_is_where_the_image_corners_fall_on_the_board():
    outline = BOARD.image_outline(20, 10)
    per_pixel = BOARD.square / 20
    np.testing.assert_allclose(outline[0], [-30 * per_pixel, -30 * per_pixel, 0])
    np.testing.assert_allclose(outline[2], [(180 - 30) * per_pixel, (160 - 30) * per_pixel, 0])


def test_a_board_that_looks_the_same_turned_is_refused():
    with pytest.raises(PerceptionError, match=r"7 x 7 board looks the same turned half a turn.*e.g. 7 x 8"):
        Checkerboard(7, 7, 0.03)


def test_rendered_corners_land_where_the_true_camera_projects_them(views):
    """The texture mapping and the corner order are right: each found corner is where its board point projects."""
    for index, (frame, pose) in enumerate(zip(views, POSES)):
        corners = find_corners(frame, BOARD)
        assert corners is not None, f"view {index}: board not found"
        errors = np.linalg.norm(corners - TRUE_CAMERA.project(world_corners(pose)), axis=1)
        assert errors.mean() < 0.3 and errors.max() < 1.2, f"view {index}: mean {errors.mean():.2f}, max {errors.max():.2f} px"


# ---------------------------------------------------------------------- intrinsics and pose


def test_intrinsics_from_rendered_views_are_within_1_percent(calibration):
    assert calibration.views_used == tuple(range(len(POSES)))
    assert calibration.image_size == (320, 240)
    assert calibration.rms < 0.3
    assert calibration.K[0, 0] == pytest.approx(TRUE_CAMERA.fx, rel=0.01)
    assert calibration.K[1, 1] == pytest.approx(TRUE_CAMERA.fy, rel=0.01)
    assert abs(calibration.K[0, 2] - TRUE_CAMERA.cx) < 3 and abs(calibration.K[1, 2] - TRUE_CAMERA.cy) < 3
    assert np.abs(calibration.dist).max() < 0.1  # the renderer has no lens distortion


@pytest.mark.parametrize("view", [0, 1, 4])
def test_camera_pose_from_one_view_of_a_known_board_is_within_5_mm(views, calibration, view):
    found = camera_pose_from_board(views[view], BOARD, calibration.K, calibration.dist, POSES[view])
    assert np.linalg.norm(found.position - TRUE_CAMERA.position) < 0.005
    turn = np.degrees(np.linalg.norm(cv2.Rodrigues(found.R @ TRUE_CAMERA.R.T)[0]))
    assert turn < 0.5
    exact = camera_pose_from_board(views[view], BOARD, TRUE_CAMERA.K, None, POSES[view])  # with the true intrinsics
    assert np.linalg.norm(exact.position - TRUE_CAMERA.position) < 0.002
    # The found camera maps world points where the true one does.
    np.testing.assert_allclose(found.project(world_corners(POSES[view])), TRUE_CAMERA.project(world_corners(POSES[view])), atol=1.0)


def test_calibration_round_trips_through_a_json_file(tmp_path, views, calibration):
    camera = camera_pose_from_board(views[0], BOARD, calibration.K, calibration.dist, POSES[0])
    save_calibration(tmp_path / "cell3.json", camera, calibration.rms)
    again, rms = load_calibration(tmp_path / "cell3.json")
    assert rms == calibration.rms
    for name in ("K", "dist", "R", "t"):
        np.testing.assert_array_equal(getattr(again, name), getattr(camera, name))
    assert calibration.camera().width == 320 and np.array_equal(calibration.camera().K, calibration.K)


# ---------------------------------------------------------------------- refusals


def test_fewer_than_three_views_of_the_board_is_refused(views):
    blank = np.full((240, 320, 3), 90, np.uint8)
    with pytest.raises(CalibrationError, match=r"at least 3 views; it was found in 2 of 4"):
        calibrate_intrinsics([views[0], blank, views[1], blank], BOARD)


def test_views_of_different_sizes_are_refused(views):
    with pytest.raises(PerceptionError, match=r"calibration image 1 is 160x120; the first was 320x240"):
        calibrate_intrinsics([views[0], cv2.resize(views[1], (160, 120))], BOARD)


def test_pose_from_an_image_without_the_board_is_refused():
    with pytest.raises(CalibrationError, match="checkerboard is not \\(wholly\\) in view"):
        camera_pose_from_board(np.full((240, 320), 90, np.uint8), BOARD, TRUE_CAMERA.K, None, POSES[0])


def test_bad_images_and_files_are_refused_with_a_reason(tmp_path):
    with pytest.raises(PerceptionError, match=r"grey \(H, W\) or RGB \(H, W, 3\) uint8 array, got \(10, 10, 3\) float64"):
        find_corners(np.zeros((10, 10, 3)), BOARD)
    with pytest.raises(CalibrationError, match="no calibration file at .*missing.json"):
        load_calibration(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{\"camera\": {\"width\": 3}}")
    with pytest.raises(CalibrationError, match="bad.json: not a camera description"):
        load_calibration(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(CalibrationError, match="text.json is not a calibration file"):
        load_calibration(tmp_path / "text.json")
