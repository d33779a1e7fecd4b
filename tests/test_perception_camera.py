"""The pinhole camera model: OpenCV's convention, round trips, files, and the simulator rendering through it."""

from __future__ import annotations

import cv2
import numpy as np
import pybullet as pb
import pytest

from perception.camera_model import PinholeCamera, look_at_rotation
from perception.errors import PerceptionError


def overhead(width=160, height=120, **kw) -> PinholeCamera:
    return PinholeCamera(width, height, 150.0, 140.0, 82.0, 57.5, **kw).looking_at([0.3, 0.2, 0.9], [0.05, -0.05, 0.0], up=(1, 0, 0))


def test_projection_follows_opencv_for_points_with_and_without_distortion():
    points = np.random.default_rng(0).uniform([-0.2, -0.3, 0.0], [0.3, 0.2, 0.1], (50, 3))
    for dist in (np.zeros(5), np.array([-0.12, 0.03, 0.001, -0.002, 0.0])):
        cam = overhead(dist=dist)
        rvec, _ = cv2.Rodrigues(cam.R)
        want, _ = cv2.projectPoints(points, rvec, cam.t, cam.K, cam.dist)
        np.testing.assert_allclose(cam.project(points), want.reshape(-1, 2), atol=1e-9)


def test_backprojection_and_plane_intersection_invert_projection():
    cam = overhead(dist=np.array([-0.1, 0.02, 0.0, 0.0, 0.0]))
    points = np.random.default_rng(1).uniform([-0.2, -0.3, 0.0], [0.3, 0.2, 0.1], (20, 3))
    pixels = cam.project(points)
    np.testing.assert_allclose(cam.backproject(pixels, cam.to_camera(points)[:, 2]), points, atol=1e-6)
    on_plane = points.copy()
    on_plane[:, 2] = 0.04
    np.testing.assert_allclose(cam.intersect_plane(cam.project(on_plane), 0.04), on_plane, atol=1e-6)


def test_looking_at_puts_the_target_on_the_principal_point_with_up_up():
    cam = PinholeCamera.from_fov(84, 84, 1.0).looking_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.5])
    np.testing.assert_allclose(cam.position, [1.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(cam.project([[0.0, 0.0, 0.5]])[0], [41.5, 41.5], atol=1e-9)
    above = cam.project([[0.0, 0.0, 0.6]])[0]
    assert above[1] < 41.5 and abs(above[0] - 41.5) < 1e-9  # up in the world is up (smaller v) in the image
    assert cam.fov_y == pytest.approx(1.0)


def test_camera_description_round_trips_through_json_lists():
    cam = overhead(dist=np.array([0.01, -0.002, 0.0, 0.0, 0.0003]))
    again = PinholeCamera.from_dict(cam.to_dict())
    for name in ("K", "R", "t", "dist"):
        np.testing.assert_array_equal(getattr(again, name), getattr(cam, name))
    assert (again.width, again.height) == (cam.width, cam.height)


@pytest.mark.parametrize("make, message", [
    (lambda: PinholeCamera(0, 10, 1.0, 1.0, 0.0, 0.0), "size must be positive"),
    (lambda: PinholeCamera(10, 10, -1.0, 1.0, 0.0, 0.0), "focal lengths must be positive"),
    (lambda: PinholeCamera(10, 10, 1.0, 1.0, 0.0, 0.0, R=np.diag([1.0, 1.0, -1.0])), "rotation matrix"),
    (lambda: PinholeCamera.from_fov(10, 10, 3.5), r"field of view must be in \(0, pi\)"),
    (lambda: look_at_rotation([0, 0, 1], [0, 0, 0], up=(0, 0, 1)), "parallel to the viewing direction"),
    (lambda: PinholeCamera.from_dict({"width": 10}), "not a camera description"),
    (lambda: overhead().opengl_projection_matrix(0.05, 3.0, renderer="gl"), "renderer must be one of tiny, opengl"),
    (lambda: overhead().opengl_projection_matrix(0.5, 0.5), "0 < near < far"),
])
def test_bad_camera_models_are_refused_with_a_reason(make, message):
    with pytest.raises(PerceptionError, match=message):
        make()


def test_pybullet_renders_through_the_model_where_it_projects():
    """A thin plate on the floor, rendered with the model's OpenGL matrices, appears where project() says."""
    cid = pb.connect(pb.DIRECT)
    try:
        floor = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[3, 3, 0.001], rgbaColor=[1, 1, 1, 1], physicsClientId=cid)
        pb.createMultiBody(0, -1, floor, [0, 0, -0.001], physicsClientId=cid)
        centre = np.array([0.12, -0.07, 0.0005])
        plate = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[0.015, 0.015, 0.0005], rgbaColor=[1, 0, 0, 1], physicsClientId=cid)
        pb.createMultiBody(0, -1, plate, centre.tolist(), physicsClientId=cid)
        for cam in (overhead(), PinholeCamera(120, 90, 100.0, 110.0, 50.0, 40.0).looking_at([-0.2, 0.4, 0.7], [0.1, -0.05, 0.0])):
            near, far = 0.05, 3.0
            _, _, rgba, depth, _ = pb.getCameraImage(cam.width, cam.height, cam.opengl_view_matrix(),
                                                     cam.opengl_projection_matrix(near, far), renderer=pb.ER_TINY_RENDERER,
                                                     physicsClientId=cid)
            rgba = np.asarray(rgba, np.uint8).reshape(cam.height, cam.width, 4)
            vs, us = np.nonzero((rgba[..., 0] > 150) & (rgba[..., 1] < 80))
            np.testing.assert_allclose([us.mean(), vs.mean()], cam.project(centre[None])[0], atol=0.3)
            z = far * near / (far - (far - near) * np.asarray(depth, np.float64).reshape(cam.height, cam.width))
            # The depth buffer, converted to metres along the optical axis, puts the floor pixels back on the floor.
            fv, fu = np.nonzero(rgba[..., 1] > 200)
            floor_points = cam.backproject(np.stack([fu, fv], axis=1), z[fv, fu])
            assert np.abs(floor_points[:, 2]).max() < 1e-4
    finally:
        pb.disconnect(physicsClientId=cid)
