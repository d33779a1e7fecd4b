"""Part localisation: synthetic frames drawn with OpenCV, real PyBullet renders at two lights, bad inputs, overlays."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pybullet as pb
import pytest

from perception.camera_model import PinholeCamera
from perception.errors import PerceptionError
from perception.localize import Detection, PartClass, PartLocator, wrap_angle
from perception.overlay import AXIS_COLORS, BOX_COLOR, draw_detections

RED_BOX = PartClass("red_box", (220, 30, 30), "box", (0.05, 0.03, 0.04))
RED_CAN = PartClass("red_can", (220, 30, 30), "cylinder", (0.04, 0.04, 0.03))  # shares red: shape decides
GREEN_CUBE = PartClass("green_cube", (0.12, 0.7, 0.16), "box", (0.04, 0.04, 0.04))
BLUE_CAN = PartClass("blue_can", (30, 50, 220), "cylinder", (0.035, 0.035, 0.05))
CLASSES = [RED_BOX, RED_CAN, GREEN_CUBE, BLUE_CAN]
TABLE_RGB = (150, 150, 150)
# A known layout: (class, x, y, yaw) on a table at z = 0.
LAYOUT = [(RED_BOX, -0.15, 0.08, 0.5), (RED_CAN, -0.05, -0.12, 0.0), (GREEN_CUBE, 0.04, 0.1, -0.3),
          (BLUE_CAN, 0.16, -0.02, 0.0), (RED_BOX, 0.12, -0.14, -1.2), (GREEN_CUBE, -0.13, -0.06, 0.7)]


def overhead_camera(width: int, height: int) -> PinholeCamera:
    """About 0.7 m above the table, slightly off-centre and tilted, seeing a ~0.55 m field."""
    return PinholeCamera.from_fov(width, height, math.radians(45)).looking_at([0.03, -0.04, 0.7], [0.0, 0.0, 0.0], up=(0, 1, 0))


def footprint(part: PartClass, x: float, y: float, yaw: float) -> np.ndarray:
    """(N, 2) world x-y outline of the part seen from above."""
    if part.shape == "cylinder":
        a = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        return np.stack([x + part.size[0] / 2 * np.cos(a), y + part.size[0] / 2 * np.sin(a)], axis=1)
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * np.array(part.size[:2]) / 2
    return corners @ np.array([[c, s], [-s, c]]) + [x, y]


def expected_yaw(part: PartClass, yaw: float) -> float:
    if part.shape == "cylinder":
        return 0.0
    return wrap_angle(yaw, math.pi / 2 if part.square else math.pi)


# ---------------------------------------------------------------------- synthetic frames


def draw_scene(camera: PinholeCamera, layout, light: float = 1.0, tint=(1.0, 1.0, 1.0), support_z: float = 0.0) -> np.ndarray:
    """Each part as OpenCV polygons: its silhouette (hull of top and bottom outlines) in a darker shade for the
    sides, then its top face in its colour; light scales and tint multiplies every colour (the light)."""
    image = np.zeros((camera.height, camera.width, 3), np.float64)
    image[:] = TABLE_RGB
    # Farther parts first, so a nearer one would cover it (the layout keeps them apart anyway).
    for part, x, y, yaw in sorted(layout, key=lambda p: -np.linalg.norm(camera.to_camera([[p[1], p[2], support_z]]))):
        outline = footprint(part, x, y, yaw)
        top = camera.project(np.c_[outline, np.full(len(outline), support_z + part.size[2])])
        bottom = camera.project(np.c_[outline, np.full(len(outline), support_z)])
        color = np.array(part.color) * 255
        for polygon, shade in ((cv2.convexHull(np.concatenate([top, bottom]).astype(np.float32)).reshape(-1, 2), 0.6), (top, 1.0)):
            fixed = np.round(polygon * 16).astype(np.int32)  # 4 fractional bits (OpenCV's pixel centres are integers too)
            cv2.fillConvexPoly(image, fixed, (color * shade).tolist(), lineType=cv2.LINE_8, shift=4)
    return np.clip(image * light * np.asarray(tint), 0, 255).astype(np.uint8)


def ray_cast_depth(camera: PinholeCamera, layout, support_z: float = 0.0) -> np.ndarray:
    """(H, W) camera-z depth (m) of the nearest surface along each pixel's ray: the parts or the table."""
    vs, us = np.mgrid[0:camera.height, 0:camera.width]
    rays = camera.rays(np.stack([us.ravel(), vs.ravel()], axis=1))
    eye = camera.position
    hit = (support_z - eye[2]) / rays[:, 2]
    for part, x, y, yaw in layout:
        c, s = math.cos(yaw), math.sin(yaw)
        to_part = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])  # world -> part frame rotation
        o = to_part @ (eye - [x, y, support_z + part.size[2] / 2])
        d = rays @ to_part.T
        half = np.array(part.size) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            if part.shape == "box":
                t1, t2 = (-half - o) / d, (half - o) / d
                near, far = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
                t = np.where((near <= far) & (near > 0), near, np.inf)
            else:
                a = d[:, 0] ** 2 + d[:, 1] ** 2
                b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1])
                disc = b * b - 4 * a * (o[0] ** 2 + o[1] ** 2 - half[0] ** 2)
                side = (-b - np.sqrt(disc)) / (2 * a)
                side = np.where((disc >= 0) & (np.abs(o[2] + side * d[:, 2]) <= half[2]), side, np.inf)
                cap = (half[2] - o[2]) / d[:, 2]
                cap_xy = o[:2] + cap[:, None] * d[:, :2]
                cap = np.where(np.hypot(cap_xy[:, 0], cap_xy[:, 1]) <= half[0], cap, np.inf)
                t = np.minimum(side, cap)
        hit = np.minimum(hit, t)
    return (hit * (rays @ camera.R[2])).reshape(camera.height, camera.width)  # along the ray -> along the optical axis


def match(detections, layout, tolerance=0.02):
    """The detection nearest each laid part (within tolerance in x-y), in layout order; None where none."""
    found = []
    for _, x, y, _ in layout:
        near = [d for d in detections if math.hypot(d.position[0] - x, d.position[1] - y) < tolerance]
        found.append(near[0] if len(near) == 1 else None)
    return found


def pose_errors(detections, layout, support_z=0.0):
    """(max position error m, max box yaw error rad); asserts every part found once with its class and shape."""
    assert len(detections) == len(layout), [d.class_name for d in detections]
    position_errors, yaw_errors = [], []
    for detection, (part, x, y, yaw) in zip(match(detections, layout), layout):
        assert detection is not None, f"{part.name} at ({x}, {y}) not found"
        assert (detection.class_name, detection.shape) == (part.name, part.shape)
        position_errors.append(np.linalg.norm(detection.position - [x, y, support_z + part.size[2] / 2]))
        period = math.pi / 2 if part.square else math.pi
        if part.shape == "box":
            yaw_errors.append(abs(wrap_angle(detection.yaw - yaw, period)))
        else:
            assert detection.yaw == 0.0
    return max(position_errors), max(yaw_errors)


@pytest.mark.parametrize("with_depth", [False, True])
def test_synthetic_parts_are_found_with_their_class_and_pose(with_depth):
    camera = overhead_camera(240, 180)
    rgb = draw_scene(camera, LAYOUT)
    depth = ray_cast_depth(camera, LAYOUT) if with_depth else None
    locator = PartLocator(CLASSES, support_z=None if with_depth else 0.0)  # with depth it measures the table
    detections = locator.locate(rgb, camera, depth)
    position_error, yaw_error = pose_errors(detections, LAYOUT)
    assert position_error < 0.002
    assert yaw_error < math.radians(2)
    assert [d.position[0] for d in detections] == sorted(d.position[0] for d in detections)
    for d in detections:
        assert d.score > 0.9  # drawn in the class colours exactly (the shaded sides are the same hue)
        assert -math.pi / 2 <= d.yaw < math.pi / 2
        if d.class_name == GREEN_CUBE.name:
            assert -math.pi / 4 <= d.yaw < math.pi / 4  # a square box looks the same every quarter turn


def test_top_face_not_the_side_faces_gives_the_position():
    """A tall part far from the camera's foot shows a wide side face; the centre is still right, not pulled toward it."""
    tower = PartClass("tower", (30, 50, 220), "box", (0.04, 0.04, 0.12))
    layout = [(tower, 0.2, 0.15, 0.2)]
    camera = overhead_camera(240, 180)
    rgb = draw_scene(camera, layout)
    silhouette_v, silhouette_u = np.nonzero(rgb[..., 2] > 100)
    naive = camera.intersect_plane([[silhouette_u.mean(), silhouette_v.mean()]], 0.12)[0]
    assert math.hypot(naive[0] - 0.2, naive[1] - 0.15) > 0.005  # the blob's own centroid is off by more than 5 mm
    (detection,) = PartLocator([tower], support_z=0.0).locate(rgb, camera)
    assert np.linalg.norm(detection.position - [0.2, 0.15, 0.06]) < 0.002


def test_dimmer_brighter_and_tinted_light_finds_the_same_parts():
    camera = overhead_camera(240, 180)
    locator = PartLocator(CLASSES, support_z=0.0)
    reference = locator.locate(draw_scene(camera, LAYOUT), camera)
    for light, tint in ((0.45, (1, 1, 1)), (1.3, (1, 1, 1)), (1.0, (1.0, 0.85, 0.7)), (0.7, (0.85, 0.9, 1.0))):
        detections = locator.locate(draw_scene(camera, LAYOUT, light, tint), camera)
        assert [d.class_name for d in detections] == [d.class_name for d in reference]
        np.testing.assert_allclose([d.position for d in detections], [d.position for d in reference], atol=0.0015)


def test_parts_cut_by_the_image_border_and_specks_are_dropped():
    camera = overhead_camera(160, 120)
    field_edge = camera.intersect_plane([[0.0, 60.0]], 0.04)[0]  # a world point on the image's left edge
    layout = [(RED_BOX, field_edge[0], field_edge[1], 0.0), (GREEN_CUBE, 0.05, 0.05, 0.2)]
    rgb = draw_scene(camera, layout)
    assert (rgb[:, 0, 0] > 180).sum() > 5  # the red box is half in view, on the border
    rgb[100:102, 100:102] = (30, 50, 220)  # four blue pixels: a speck, not a can
    detections = PartLocator(CLASSES, support_z=0.0, min_area_px=10).locate(rgb, camera)
    assert [d.class_name for d in detections] == ["green_cube"]


def test_touching_parts_of_one_colour_fit_no_class_and_are_dropped():
    camera = overhead_camera(240, 180)
    locator = PartLocator(CLASSES, support_z=0.0)
    apart = [(GREEN_CUBE, 0.0, 0.0, 0.0), (GREEN_CUBE, 0.06, 0.0, 0.0)]
    assert len(locator.locate(draw_scene(camera, apart), camera)) == 2
    touching = [(GREEN_CUBE, 0.0, 0.0, 0.0), (GREEN_CUBE, 0.04, 0.0, 0.0)]  # side by side: one 8 x 4 cm blob
    assert locator.locate(draw_scene(camera, touching), camera) == []


def test_part_class_colours_are_normalised_and_checked():
    assert PartClass("a", (255, 0, 0), "box", (0.1, 0.1, 0.1)).color == (1.0, 0.0, 0.0)
    assert PartClass("a", (1, 0.5, 0), "box", (0.1, 0.1, 0.1)).color == (1.0, 0.5, 0.0)  # no value above 1: 0-1 scale
    assert PartClass("a", (0, 0, 51), "box", (0.1, 0.2, 0.1)).square is False


@pytest.mark.parametrize("make, message", [
    (lambda: PartClass("x", (1, 0, 0), "sphere", (0.1, 0.1, 0.1)), "shape must be one of box, cylinder"),
    (lambda: PartClass("x", (1, 0, 0), "cylinder", (0.1, 0.05, 0.1)), r"cylinder's size is \(diameter, diameter, height\)"),
    (lambda: PartClass("x", (300, 0, 0), "box", (0.1, 0.1, 0.1)), "values up to 255"),
    (lambda: PartClass("x", (0.02, 0.01, 0.0), "box", (0.1, 0.1, 0.1)), "too dark"),
    (lambda: PartClass("x", (1, 0, 0), "box", (0.1, -0.1, 0.1)), "three positive lengths"),
    (lambda: PartClass("", (1, 0, 0), "box", (0.1, 0.1, 0.1)), "non-empty name"),
    (lambda: PartLocator([]), "at least one part class; the class list is empty"),
    (lambda: PartLocator([RED_BOX, RED_BOX]), "names must be unique"),
    (lambda: PartLocator([RED_BOX], max_color_distance=2.0), r"angle in \(0, pi/2\)"),
])
def test_bad_classes_and_settings_are_refused_with_a_reason(make, message):
    with pytest.raises(PerceptionError, match=message):
        make()


@pytest.mark.parametrize("frame, depth, support_z, message", [
    (np.zeros((120, 160, 3), np.float32), None, 0.0, r"uint8 array of shape \(120, 160, 3\).*got \(120, 160, 3\) float32"),
    (np.zeros((160, 120, 3), np.uint8), None, 0.0, r"camera's 160x120\), got \(160, 120, 3\) uint8"),
    (np.zeros((120, 160, 4), np.uint8), None, 0.0, r"got \(120, 160, 4\) uint8"),
    (np.zeros((120, 160, 3), np.uint8), np.ones((60, 80)), 0.0, r"depth image must be a float array of shape \(120, 160\).*got \(60, 80\) float64"),
    (np.zeros((120, 160, 3), np.uint8), np.ones((120, 160), np.uint16), 0.0, r"depth image must be a float array.*uint16"),
    (np.zeros((120, 160, 3), np.uint8), None, None, "without a depth image the locator needs support_z"),
])
def test_bad_frames_are_refused_naming_the_problem(frame, depth, support_z, message):
    locator = PartLocator(CLASSES, support_z=support_z)
    with pytest.raises(PerceptionError, match=message):
        locator.locate(frame, overhead_camera(160, 120), depth)


# ---------------------------------------------------------------------- PyBullet renders

NEAR, FAR = 0.05, 3.0
LIGHTS = {
    "nominal": {},
    "warm side light, low ambient, shadows": {"lightDirection": [1.0, -0.5, 0.6], "lightColor": [1.0, 0.8, 0.6],
                                              "lightAmbientCoeff": 0.2, "lightDiffuseCoeff": 0.8, "shadow": 1},
}


def random_layout(rng: np.random.Generator, count: int, classes, half_field: float = 0.2, spacing: float = 0.09):
    layout = []
    while len(layout) < count:
        x, y = rng.uniform(-half_field, half_field, 2)
        if all(math.hypot(x - px, y - py) >= spacing for _, px, py, _ in layout):
            layout.append((classes[len(layout) % len(classes)], float(x), float(y), float(rng.uniform(-math.pi, math.pi))))
    return layout


@pytest.fixture(scope="module")
def rendered_scene():
    """A table with boxes and cylinders of three colours at random known poses, rendered under each light."""
    camera = overhead_camera(240, 180)
    layout = random_layout(np.random.default_rng(7), 8, CLASSES)
    cid = pb.connect(pb.DIRECT)
    try:
        table = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[1, 1, 0.01], rgbaColor=[0.6, 0.6, 0.6, 1], physicsClientId=cid)
        pb.createMultiBody(0, -1, table, [0, 0, -0.01], physicsClientId=cid)
        for part, x, y, yaw in layout:
            rgba = [*part.color, 1.0]
            if part.shape == "box":
                shape = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[s / 2 for s in part.size], rgbaColor=rgba, physicsClientId=cid)
            else:
                shape = pb.createVisualShape(pb.GEOM_CYLINDER, radius=part.size[0] / 2, length=part.size[2], rgbaColor=rgba, physicsClientId=cid)
            pb.createMultiBody(0, -1, shape, [x, y, part.size[2] / 2], pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=cid)
        frames = {}
        for name, light in LIGHTS.items():
            _, _, rgba, depth_buffer, _ = pb.getCameraImage(camera.width, camera.height, camera.opengl_view_matrix(),
                                                            camera.opengl_projection_matrix(NEAR, FAR), renderer=pb.ER_TINY_RENDERER,
                                                            physicsClientId=cid, **light)
            rgb = np.asarray(rgba, np.uint8).reshape(camera.height, camera.width, 4)[..., :3].copy()
            d = np.asarray(depth_buffer, np.float64).reshape(camera.height, camera.width)
            frames[name] = (rgb, FAR * NEAR / (FAR - (FAR - NEAR) * d))  # depth buffer -> metres along the optical axis
    finally:
        pb.disconnect(physicsClientId=cid)
    return camera, layout, frames


@pytest.mark.parametrize("light", list(LIGHTS))
@pytest.mark.parametrize("with_depth", [False, True])
def test_rendered_parts_are_found_within_5_mm_and_3_degrees(rendered_scene, light, with_depth):
    camera, layout, frames = rendered_scene
    rgb, depth = frames[light]
    locator = PartLocator(CLASSES, support_z=0.0)
    detections = locator.locate(rgb, camera, depth if with_depth else None)
    position_error, yaw_error = pose_errors(detections, layout)
    assert position_error < 0.005
    assert yaw_error < math.radians(3)


def test_the_two_lights_really_differ(rendered_scene):
    _, _, frames = rendered_scene
    (a, _), (b, _) = frames.values()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 20  # grey levels: the test is not run twice on one image


# ---------------------------------------------------------------------- overlays


def test_overlay_draws_box_label_and_axes_on_a_copy():
    camera = overhead_camera(240, 180)
    rgb = draw_scene(camera, LAYOUT[:1])
    before = rgb.copy()
    detections = PartLocator(CLASSES, support_z=0.0).locate(rgb, camera)
    drawn = draw_detections(rgb, detections, camera, axis_length=0.04)
    np.testing.assert_array_equal(rgb, before)  # the input is untouched
    (d,) = detections
    x, y, w, h = d.box
    assert tuple(drawn[y - 1, x + w // 2]) == BOX_COLOR and tuple(drawn[y + h, x + w // 2]) == BOX_COLOR
    c, s = math.cos(d.yaw), math.sin(d.yaw)
    for direction, color in zip(([c, s, 0.0], [-s, c, 0.0]), AXIS_COLORS):
        end = np.round(camera.project(d.position + 0.04 * np.array(direction))[0]).astype(int)
        assert tuple(drawn[end[1], end[0]]) == color
    label_rows = drawn[max(y - 12, 0):y - 1, x:x + 40]
    assert np.any(np.all(label_rows > 200, axis=2))  # white label text above the box


def test_overlay_refuses_a_frame_that_is_not_rgb():
    detection = Detection("a", "box", np.zeros(3), 0.0, (0.0, 0.0), (0, 0, 1, 1), 1, 1.0)
    with pytest.raises(PerceptionError, match=r"\(H, W, 3\) uint8 RGB frame, got \(10, 10\) uint8"):
        draw_detections(np.zeros((10, 10), np.uint8), [detection], overhead_camera(10, 10))
