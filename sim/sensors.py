"""Cameras as sensors: a scenario camera rendered through its `PinholeCamera` (OpenCV convention) at its rate.

A frame holds RGB (uint8), depth (float32 metres along the optical axis) and segmentation (int32 Bullet
body ids, -1 where nothing was hit), each only if the camera lists that modality, with the camera model
it was taken from (`camera.to_dict()` exports K, dist, R, t as OpenCV's calibration gives them).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pybullet as pb

from perception.camera_model import PinholeCamera
from scenarios.naming import did_you_mean
from scenarios.schema import CameraConfig
from sim.camera_pose import CameraError, fixed_model, intrinsics, mount_in_link, mounted_model
from sim.robots.base import Robot
from sim.simulator import Simulator


@dataclass(frozen=True, eq=False)
class CameraFrame:
    rgb: Optional[np.ndarray]  # uint8 (H, W, 3)
    depth: Optional[np.ndarray]  # float32 (H, W), m along the optical axis, within [near, far]
    segmentation: Optional[np.ndarray]  # int32 (H, W), Bullet body unique id, -1 = background
    camera: PinholeCamera  # intrinsics and the pose the frame was taken from
    time: float  # s of simulated time at the render
    # What a controller believes the camera is (its calibration: the nominal model) when domain
    # randomisation has moved the real one; None: the same as `camera`.
    calibration: Optional[PinholeCamera] = None


class CameraSensor:
    """One scenario camera in one simulator. A mounted camera needs the robot that carries it.

    `capture(rng)` renders when a new frame is due at `rate_hz` (every control step by default) and
    returns the last frame otherwise; noise is drawn from `rng` (the env's np_random) per rendered frame.
    Call `reset()` when the world is reset, so the first capture of an episode renders.

    Domain randomisation may move the camera away from its configured pose and fov (`perturb`: frames
    are rendered from there, `calibration` keeps the nominal model), drop frames (`drop_frames`: a
    dropped frame repeats the previous one) and make frames late (`delay_frames`: exposure, transfer and
    processing; the frame keeps the time it was taken).
    """

    def __init__(self, config: CameraConfig, sim: Simulator, robot: Robot | None = None):
        self.config, self.sim = config, sim
        self.period = 1.0 / config.rate_hz if config.rate_hz else sim.physics.control_period  # s between frames
        self._intrinsics = intrinsics(config)
        self._fixed = None if config.mount else fixed_model(config)
        self._mount = None
        if config.mount is not None:
            if robot is None:
                raise CameraError(f"camera {config.name!r} is mounted on link {config.mount.link!r} but no robot was given")
            self._robot, self._link = robot, _link_index(robot, config.name, config.mount.link)
            self._mount = mount_in_link(config.mount)
        mods = config.modalities
        self._rgb, self._depth, self._seg = "rgb" in mods, "depth" in mods, "segmentation" in mods
        self._last: CameraFrame | None = None
        self._shot_time = 0.0  # s: the last time a frame was due (rendered or dropped)
        self._perturbation: tuple[np.ndarray, np.ndarray, float] | None = None  # (offset m, rotation, fov scale)
        self._drop: tuple[float, np.random.Generator] | None = None
        self._latency = 0.0  # s from a frame being taken to its reaching the reader
        self._in_transit: deque[CameraFrame] = deque()  # taken, not yet arrived (oldest first)
        self._arrived: CameraFrame | None = None  # the newest frame that has reached the reader

    @property
    def name(self) -> str:
        return self.config.name

    def model(self, nominal: bool = False) -> PinholeCamera:
        """The camera now (a mounted one where its link is at this moment), moved by any perturbation
        unless `nominal` (the configured camera, as it was calibrated)."""
        if self._perturbation is not None and not nominal:
            return self._perturbed(self.model(nominal=True))
        if self._mount is None:
            return self._fixed
        cid, body = self.sim.cid, self._robot.body
        if self._link < 0:  # the base's URDF frame: Bullet reports the base's centre of mass
            com_pos, com_orn = pb.getBasePositionAndOrientation(body, physicsClientId=cid)
            local_pos, local_orn = pb.getDynamicsInfo(body, -1, physicsClientId=cid)[3:5]
            pos, orn = pb.multiplyTransforms(com_pos, com_orn, *pb.invertTransform(local_pos, local_orn))
        else:
            state = pb.getLinkState(body, self._link, computeForwardKinematics=1, physicsClientId=cid)
            pos, orn = state[4], state[5]
        return mounted_model(self._intrinsics, *self._mount, pos, orn)

    def reset(self) -> None:
        self._last = self._arrived = None
        self._in_transit.clear()

    def perturb(self, offset: np.ndarray | None = None, rotation: np.ndarray | None = None, fov_delta: float = 0.0) -> None:
        """Render from a moved camera: its centre shifted by `offset` (m, along the camera's own x, y, z),
        turned by `rotation` (3x3, in the camera frame) and its vertical fov changed by `fov_delta` (rad).
        No arguments: the configured camera again."""
        if offset is None and rotation is None and fov_delta == 0.0:
            self._perturbation = None
            return
        fov = self._intrinsics.fov_y
        scale = math.tan(fov / 2.0) / math.tan(min(max(fov + fov_delta, 1e-3), math.pi - 1e-3) / 2.0)
        self._perturbation = (np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64),
                              np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64), scale)

    def _perturbed(self, cam: PinholeCamera) -> PinholeCamera:
        offset, turn, scale = self._perturbation
        R = turn @ cam.R
        centre = cam.position + cam.R.T @ offset
        return PinholeCamera(cam.width, cam.height, cam.fx * scale, cam.fy * scale, cam.cx, cam.cy, R, -R @ centre, cam.dist)

    def drop_frames(self, probability: float, rng: np.random.Generator | None = None) -> None:
        """Each due frame after the first is lost with this probability (drawn from `rng`); 0: none."""
        self._drop = (probability, rng) if probability > 0 else None

    def delay_frames(self, seconds: float) -> None:
        """Each frame reaches the reader `seconds` after it was taken (0: at once). Until the episode's first
        frame has arrived, the reader gets that one (as the observation latency of state mode does)."""
        self._latency = seconds
        self._in_transit.clear()
        self._arrived = None

    def due(self) -> bool:
        """Whether the next capture renders: no frame yet, time went back (a reset), or a period has passed."""
        last, now = self._last, self.sim.time
        return last is None or now < self._shot_time - 1e-9 or now - self._shot_time >= self.period - 1e-9

    def capture(self, rng: np.random.Generator | None = None) -> CameraFrame:
        """The newest frame that has reached the reader, rendering one first when it is due."""
        if self.due():
            self._shot_time = self.sim.time
            # A dropped frame is lost on the way: the reader keeps the previous one.
            if self._drop is None or self._last is None or self._drop[1].random() >= self._drop[0]:
                self._last = self._render(rng)
                if self._latency > 0:
                    self._in_transit.append(self._last)
        if self._latency == 0:
            return self._last
        arrived_by = self.sim.time - self._latency + 1e-9
        while self._in_transit and self._in_transit[0].time <= arrived_by:
            self._arrived = self._in_transit.popleft()
        return self._arrived if self._arrived is not None else self._in_transit[0]

    def _render(self, rng: np.random.Generator | None) -> CameraFrame:
        cfg = self.config
        noise = cfg.noise
        if rng is None and (noise.rgb_std > 0 or noise.depth_std > 0):
            raise CameraError(f"camera {cfg.name!r} adds noise: capture() needs the env's random generator")
        cam = self.model()
        rgb, buffer, seg = self.sim.render_image(cam, cfg.near, cfg.far, segmentation=self._seg)
        depth = None
        if self._depth:
            depth = depth_metres(buffer, cfg.near, cfg.far)
            if noise.depth_std > 0:
                depth = np.clip(depth + rng.normal(0.0, noise.depth_std, depth.shape), cfg.near, cfg.far).astype(np.float32)
        if not self._rgb:
            rgb = None
        elif noise.rgb_std > 0:
            rgb = np.clip(np.rint(rgb + rng.normal(0.0, noise.rgb_std, rgb.shape)), 0, 255).astype(np.uint8)
        calibration = self.model(nominal=True) if self._perturbation is not None else None
        return CameraFrame(rgb, depth, seg, cam, self.sim.time, calibration)


def build_sensors(sim: Simulator, cameras: tuple[CameraConfig, ...] | list[CameraConfig], robot: Robot | None = None) -> dict[str, CameraSensor]:
    return {c.name: CameraSensor(c, sim, robot) for c in cameras}


def depth_metres(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL depth buffer values in [0, 1] -> float32 metres along the optical axis (1 -> far)."""
    d = buffer.astype(np.float64)
    return (far * near / (far - (far - near) * d)).astype(np.float32)


def depth_uint8(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth in metres -> uint8 (H, W, 1), linear over [near, far]: 0 = near, 255 = far or beyond."""
    scaled = (depth - near) * (255.0 / (far - near))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)[:, :, None]


def link_names(robot: Robot) -> dict[str, int]:
    """Every link of the robot's URDF -> its Bullet link index (-1 for the base)."""
    cid = robot.sim.cid
    names = {pb.getBodyInfo(robot.body, physicsClientId=cid)[0].decode(): -1}
    for j in range(pb.getNumJoints(robot.body, physicsClientId=cid)):
        names[pb.getJointInfo(robot.body, j, physicsClientId=cid)[12].decode()] = j
    return names


def _link_index(robot: Robot, camera: str, link: str) -> int:
    if link == "tool":
        return robot.tool_id
    names = link_names(robot)
    if link not in names:
        raise CameraError(f"camera {camera!r}: mount link {link!r} is not a link of robot {robot.model.name!r}; "
                          f"links: tool, {', '.join(names)}" + did_you_mean(link, ["tool", *names]))
    return names[link]


def render_view(sim: Simulator, config: CameraConfig, robot: Robot | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of any scenario camera now, at its width x height: the viewer's path (no rate, no noise)."""
    rgb, _, _ = sim.render_image(CameraSensor(config, sim, robot).model(), config.near, config.far)
    return rgb
