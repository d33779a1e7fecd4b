"""Draw what the locator found onto a copy of the frame: each part's box, class label and pose axes."""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from perception.camera_model import PinholeCamera
from perception.errors import PerceptionError
from perception.localize import Detection

BOX_COLOR = (255, 255, 0)  # RGB: yellow stands out on tables, totes and the usual part colours
LABEL_COLOR = (255, 255, 255)
AXIS_COLORS = ((255, 0, 0), (0, 255, 0))  # the part's x axis red, its y axis green (RGB), as robot tools draw them


def draw_detections(rgb: np.ndarray, detections: Sequence[Detection], camera: PinholeCamera, axis_length: float = 0.03) -> np.ndarray:
    """A copy of `rgb` (H, W, 3 uint8) with each detection's bounding box, "class score" label, and its x
    (red) and y (green) axes, axis_length metres long from the part's centre along its yaw; `rgb` is left as it was."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise PerceptionError(f"draw_detections needs an (H, W, 3) uint8 RGB frame, got {got}")
    canvas = np.ascontiguousarray(rgb).copy()
    for detection in detections:
        x, y, w, h = detection.box
        cv2.rectangle(canvas, (x - 1, y - 1), (x + w, y + h), BOX_COLOR, 1)
        label = f"{detection.class_name} {detection.score:.2f}"
        cv2.putText(canvas, label, (x, max(y - 4, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, LABEL_COLOR, 1, cv2.LINE_AA)
        _draw_axes(canvas, detection, camera, axis_length)
    return canvas


def _draw_axes(canvas: np.ndarray, detection: Detection, camera: PinholeCamera, axis_length: float) -> None:
    c, s = math.cos(detection.yaw), math.sin(detection.yaw)
    centre = np.asarray(detection.position, dtype=np.float64)
    points = np.stack([centre, centre + axis_length * np.array([c, s, 0.0]), centre + axis_length * np.array([-s, c, 0.0])])
    if np.any(camera.to_camera(points)[:, 2] <= 0):
        return  # behind the camera: nothing to draw
    origin, x_end, y_end = (tuple(int(v) for v in np.round(p)) for p in camera.project(points))
    for end, color in zip((x_end, y_end), AXIS_COLORS):
        cv2.line(canvas, origin, end, color, 1, cv2.LINE_8)
