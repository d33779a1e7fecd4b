"""The images of obs_mode="pixels": one uint8 array per camera whose `use` lists pixels.

Keys: `<name>` RGB uint8 (H, W, 3) if the camera lists rgb; `<name>_depth` uint8 (H, W, 1) if it lists
depth, linear over the camera's [near, far] (0 = near, 255 = far or beyond). Segmentation is not an
image observation; read it from the sensor's frame.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from sim.sensors import CameraSensor, depth_uint8


def image_spaces(sensors: list[CameraSensor]) -> dict[str, spaces.Box]:
    out: dict[str, spaces.Box] = {}
    for sensor in sensors:
        cfg = sensor.config
        if "rgb" in cfg.modalities:
            out[cfg.name] = spaces.Box(0, 255, (cfg.height, cfg.width, 3), dtype=np.uint8)
        if "depth" in cfg.modalities:
            out[f"{cfg.name}_depth"] = spaces.Box(0, 255, (cfg.height, cfg.width, 1), dtype=np.uint8)
    return out


def capture_images(sensors: list[CameraSensor], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for sensor in sensors:
        frame, cfg = sensor.capture(rng), sensor.config
        if frame.rgb is not None:
            out[cfg.name] = frame.rgb.copy()  # the sensor keeps its frame for reuse: hand out a copy
        if frame.depth is not None:
            out[f"{cfg.name}_depth"] = depth_uint8(frame.depth, cfg.near, cfg.far)
    return out


def describe_images(sensors: list[CameraSensor]) -> list[dict]:
    """Key, shape, modality and meaning of each image, with the camera's calibration (OpenCV: K, dist, R, t).

    A fixed camera gives its whole model ("camera"); a mounted one moves, so it gives its intrinsics and
    its mount on the robot link ("mount"). A depth image gives the range its 0..255 spans ("depth").
    """
    out = []
    for sensor in sensors:
        cfg = sensor.config
        lens = sensor.model(nominal=True).to_dict()  # the calibration, not a randomised pose
        where = {"camera": lens} if cfg.mount is None else {"mount": cfg.mount.model_dump()}
        common = {"dtype": "uint8", "intrinsics": {k: lens[k] for k in ("width", "height", "K", "dist")}, **where}
        if "rgb" in cfg.modalities:
            out.append({"key": cfg.name, "shape": [cfg.height, cfg.width, 3], "modality": "rgb", "channel_order": "RGB",
                        "meaning": "RGB", **common})
        if "depth" in cfg.modalities:
            out.append({"key": f"{cfg.name}_depth", "shape": [cfg.height, cfg.width, 1], "modality": "depth", "channel_order": "D",
                        "depth": {"encoding": "linear", "near_m": cfg.near, "far_m": cfg.far}, **common,
                        "meaning": f"depth along the optical axis, linear: 0 = {cfg.near} m, 255 = {cfg.far} m or beyond"})
    return out
