"""Pick and adjust the camera the viewer renders from, and render through the env's own simulator."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import pybullet as pb
from pydantic import ValidationError

from scenarios.schema import CameraConfig
from sim.camera_pose import CameraError
from sim.sensors import CameraSensor, render_view

__all__ = ["CameraError", "aim_gui", "base_env", "choose_camera", "render"]


def base_env(env: Any) -> Any:
    base = env.unwrapped
    if not hasattr(base, "sim") or not hasattr(base, "scenario"):
        raise CameraError(f"{type(base).__name__} is not a genba cell; it has no camera to view")
    return base


def choose_camera(
    env: Any, name: Optional[str] = None, *, target: Optional[Sequence[float]] = None, distance: Optional[float] = None,
    yaw: Optional[float] = None, pitch: Optional[float] = None, fov: Optional[float] = None,
    width: Optional[int] = None, height: Optional[int] = None,
):
    """The scenario's camera `name` (default: its first with `use: view`, else its first) with any pose or
    size field overridden.

    Angles are radians, as in scenario files. The result is re-validated, so an out-of-range pitch, a
    10-pixel frame or an orbit override of a camera placed by position/look_at or a mount is refused
    with the schema's own message.
    """
    scenario = base_env(env).scenario
    cameras = {c.name: c for c in scenario.cameras}
    if name is None:
        camera = ([c for c in scenario.cameras if "view" in c.use] or list(scenario.cameras))[0]
    elif name in cameras:
        camera = cameras[name]
    else:
        raise CameraError(f"scenario {scenario.name!r} has no camera {name!r}; cameras: {', '.join(cameras)}")
    updates = {"target": tuple(target) if target is not None else None, "distance": distance, "yaw": yaw,
               "pitch": pitch, "fov": fov, "width": width, "height": height}
    updates = {k: v for k, v in updates.items() if v is not None}
    try:
        return CameraConfig.model_validate({**camera.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CameraError(f"bad camera setting: {problems}") from None


def render(env: Any, camera) -> np.ndarray:
    """RGB uint8 (H, W, 3) of the cell as `camera` sees it now (CPU renderer when headless); any placement."""
    base = base_env(env)
    return render_view(base.sim, camera, base.robot)


def aim_gui(env: Any, camera) -> None:
    """Point the PyBullet GUI's own camera like `camera`, so --gui opens on the same view.

    The GUI's camera orbits a target without roll: a camera placed by position/look_at or a mount is
    matched in position and viewing direction.
    """
    base = base_env(env)
    if camera.placement == "orbit":
        distance, yaw, pitch, target = camera.distance, camera.yaw, camera.pitch, list(camera.target)
    else:
        model = CameraSensor(camera, base.sim, base.robot).model()
        forward = model.R[2]  # the optical axis in the world
        distance = float(np.linalg.norm(np.subtract(camera.look_at, camera.position))) if camera.position else 1.0
        target = (model.position + distance * forward).tolist()
        yaw, pitch = math.atan2(-forward[0], forward[1]), math.asin(float(np.clip(forward[2], -1.0, 1.0)))
    pb.resetDebugVisualizerCamera(distance, math.degrees(yaw), math.degrees(pitch), target, physicsClientId=base.sim.cid)
