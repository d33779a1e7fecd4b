"""What perception finds, drawn on the viewer's frames (`genba view --overlay`).

`PerceptionOverlay(env, view_camera)` is a frame decorator for `ViewLoop`: for each frame the viewer
shows, it renders the cell's `use: perception` camera now, runs the part locator on that frame (RGB,
and depth where the camera has it) and draws each detection (box, class label, pose axes) on a copy
of the view frame. Detections are world poses, so they are drawn through the view camera's own
model: the box is the bounding box of the class's solid at the detected pose as the view camera sees
it, not the perception camera's pixel box.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from perception.camera_model import PinholeCamera
from perception.localize import Detection, PartClass, PartLocator
from perception.overlay import draw_detections
from sim.camera import base_env
from sim.errors import SimError
from sim.sensors import CameraSensor

AXIS_LENGTH_M = 0.04  # a little longer than the parts (4 cm) so the axes stick out of them
_RIM_POINTS = 24  # a cylinder's rims, as points, for its bounding box


class OverlayError(SimError):
    """A cell the overlay cannot draw on: no perception camera, or parts no camera should find."""


class PerceptionOverlay:
    """Call it on an RGB frame of `view_camera` (a CameraConfig) rendered just now; it returns an annotated copy."""

    def __init__(self, env: Any, view_camera):
        base = base_env(env)
        scenario = base.scenario
        sensors = [s for s in base.sensors.values() if "perception" in s.config.use]
        if not sensors:
            raise OverlayError(f"--overlay needs a camera with `use: [perception]` in scenario {scenario.name!r}; its cameras: "
                               f"{', '.join(c.name for c in scenario.cameras)}")
        config = sensors[0].config
        # A sensor of its own: rendering the env's sensor out of turn would change when the env's next frame is due.
        self.sensor = CameraSensor(config, base.sim, base.robot)
        self.view = CameraSensor(view_camera, base.sim, base.robot)
        self.classes = {c.name: c for c in base.task.perception_classes()}
        self.locator = PartLocator(list(self.classes.values()), support_z=base.task.support_z())
        self.rng = np.random.default_rng(0)  # camera noise, if the scenario adds any: not the env's own stream
        self.detections: list[Detection] = []  # the last frame's, in world coordinates

    @property
    def camera_name(self) -> str:
        return self.sensor.config.name

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.sensor.reset()  # a perception frame of this very moment, whatever the camera's rate
        shot = self.sensor.capture(self.rng)
        self.detections = self.locator.locate(shot.rgb, shot.camera, shot.depth)
        view = self.view.model()  # a mounted view camera moves with the robot
        shown = [d for d in (self._as_seen(d, view) for d in self.detections) if d is not None]
        return draw_detections(frame, shown, view, axis_length=AXIS_LENGTH_M)

    def _as_seen(self, detection: Detection, view: PinholeCamera) -> Detection | None:
        """The detection with its pixel and box where the view camera sees the part; None if behind it."""
        outline = solid_outline(self.classes[detection.class_name], detection.position, detection.yaw)
        if np.any(view.to_camera(outline)[:, 2] <= 0):
            return None
        pixels = view.project(outline)
        (x0, y0), (x1, y1) = np.floor(pixels.min(axis=0)), np.ceil(pixels.max(axis=0))
        top = detection.position + [0.0, 0.0, self.classes[detection.class_name].size[2] / 2]
        u, v = view.project(top[None])[0]
        return dataclasses.replace(detection, pixel=(float(u), float(v)), box=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)))


def solid_outline(part: PartClass, centre: np.ndarray, yaw: float) -> np.ndarray:
    """(N, 3) world points outlining a flat-lying part of class `part` centred at `centre`, turned `yaw` about z."""
    sx, sy, sz = part.size
    if part.shape == "cylinder":
        a = np.linspace(0.0, 2 * math.pi, _RIM_POINTS, endpoint=False)
        rim = np.stack([sx / 2 * np.cos(a), sx / 2 * np.sin(a)], axis=1)
    else:
        rim = np.array([[sx, sy], [-sx, sy], [-sx, -sy], [sx, -sy]]) / 2.0
    c, s = math.cos(yaw), math.sin(yaw)
    rim = rim @ np.array([[c, s], [-s, c]])  # rotate by yaw (row vectors)
    points = [np.c_[rim, np.full(len(rim), z)] for z in (-sz / 2, sz / 2)]
    return np.concatenate(points) + np.asarray(centre, dtype=np.float64)
