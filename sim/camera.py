"""Pick and adjust the camera the viewer renders from, and render through the env's own simulator."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import pybullet as pb
from pydantic import ValidationError

from scenarios.schema import CameraConfig
from sim.errors import SimError


class CameraError(SimError):
    """A camera that does not exist or cannot render."""


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
    """The scenario's camera `name` (default: its first) with any pose or size field overridden.

    Angles are radians, as in scenario files. The result is re-validated, so an out-of-range pitch or
    a 10-pixel frame is refused with the schema's own message.
    """
    scenario = base_env(env).scenario
    cameras = {c.name: c for c in scenario.cameras}
    if name is None:
        camera = scenario.cameras[0]
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
    """RGB uint8 (H, W, 3) of the cell as `camera` sees it now (CPU renderer when headless)."""
    return base_env(env).sim.render(camera, camera.width, camera.height)


def aim_gui(env: Any, camera) -> None:
    """Point the PyBullet GUI's own camera like `camera`, so --gui opens on the same view."""
    sim = base_env(env).sim
    pb.resetDebugVisualizerCamera(camera.distance, math.degrees(camera.yaw), math.degrees(camera.pitch),
                                  list(camera.target), physicsClientId=sim.cid)
