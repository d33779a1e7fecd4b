"""One PyBullet world with a private connection.

Every call passes `physicsClientId`, so any number of simulators coexist in one process without
touching PyBullet's global default client (the bug behind bullet3#1643 and friends).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pybullet as pb

from perception.camera_model import PinholeCamera
from scenarios.schema import CameraConfig, PhysicsConfig
from sim.camera_pose import fixed_model
from sim.errors import SimError

VISUAL_DETAILS = ("full", "low")


class NoDisplayError(SimError):
    """A GUI was requested where no display exists."""


@dataclass(frozen=True)
class Lighting:
    """How the CPU renderer lights a frame (PyBullet's getCameraImage light arguments).

    direction: towards the light (m, world; any length); color: RGB 0-1; ambient, diffuse, specular:
    the shading coefficients (0-1). The defaults are PyBullet's own (a fresh client's default render,
    to the grey level); every render passes them, because PyBullet keeps the last light it was given.
    """

    direction: tuple[float, float, float] = (-50.0, 30.0, 100.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05

    def arguments(self) -> dict:
        return {"lightDirection": list(self.direction), "lightColor": list(self.color), "lightAmbientCoeff": self.ambient,
                "lightDiffuseCoeff": self.diffuse, "lightSpecularCoeff": self.specular}


class Simulator:
    """Owns the Bullet connection, the body registry (by unique name) and the stepping clock.

    `visual_detail` is how bodies look to cameras: "full" (the models' own meshes) or "low" (a robot
    model's low-detail visuals, e.g. its collision hulls: several times cheaper to render; the physics
    is the same).
    """

    def __init__(self, physics: PhysicsConfig, gui: bool = False, visual_detail: str = "full"):
        if visual_detail not in VISUAL_DETAILS:
            raise ValueError(f"visual_detail must be one of {VISUAL_DETAILS}, got {visual_detail!r}")
        self.physics = physics
        self.gui = gui
        self.visual_detail = visual_detail
        self.lighting = Lighting()  # PyBullet's default light; assign another to vary it
        # The CPU renderer works headless; with a window, its OpenGL renderer is there (and faster).
        self.renderer = pb.ER_BULLET_HARDWARE_OPENGL if gui else pb.ER_TINY_RENDERER
        if gui and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            # PyBullet's GUI calls exit() when it finds no X server; refuse before that happens.
            raise NoDisplayError(
                "the PyBullet GUI needs a display and $DISPLAY is not set; use --record or --web instead, "
                "or run under a virtual display (xvfb-run)"
            )
        self.cid = pb.connect(pb.GUI if gui else pb.DIRECT)
        if self.cid < 0:
            raise RuntimeError("could not connect to PyBullet (a GUI needs a display; use DIRECT)")
        self._bodies: dict[str, int] = {}
        self.time = 0.0  # simulated seconds since the last reset
        self.steps = 0  # control steps taken: lets cached state know when it is stale
        # (every, hook): hook() after every `every`-th physics substep of a control period (a wrist F/T
        # sensor samples there, peg-insert checks its contact force); empty in most cells.
        self._hooks: list[tuple[int, Callable[[], None]]] = []
        self._schedule: list[tuple[Callable[[], None], ...]] | None = None  # per substep, the hooks due after it
        pb.setTimeStep(physics.timestep, physicsClientId=self.cid)
        pb.setGravity(0.0, 0.0, physics.gravity, physicsClientId=self.cid)
        pb.setPhysicsEngineParameter(
            numSolverIterations=physics.solver_iterations, deterministicOverlappingPairs=1, physicsClientId=self.cid
        )
        if gui:
            pb.configureDebugVisualizer(pb.COV_ENABLE_GUI, 0, physicsClientId=self.cid)

    # --- bodies -----------------------------------------------------------------------------
    def body(self, name: str) -> int:
        return self._bodies[name]

    def register(self, name: str, body_id: int) -> int:
        if name in self._bodies:
            raise ValueError(f"body name {name!r} is already used in this simulator")
        self._bodies[name] = body_id
        return body_id

    def load_urdf(self, name: str, path: str | Path, position: Sequence[float], yaw: float = 0.0, fixed: bool = True) -> int:
        flags = pb.URDF_USE_INERTIA_FROM_FILE | pb.URDF_USE_SELF_COLLISION | pb.URDF_USE_SELF_COLLISION_EXCLUDE_ALL_PARENTS
        body = pb.loadURDF(
            str(path), basePosition=list(position), baseOrientation=yaw_quat(yaw),
            useFixedBase=fixed, flags=flags, physicsClientId=self.cid,
        )
        return self.register(name, body)

    def create_box(
        self, name: str, size: Sequence[float], position: Sequence[float], *, yaw: float = 0.0, mass: float = 0.0,
        color: Sequence[float] = (0.6, 0.6, 0.6, 1.0), friction: float = 0.8,
    ) -> int:
        half = [s / 2.0 for s in size]
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=self.cid)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=list(color), physicsClientId=self.cid)
        body = pb.createMultiBody(mass, col, vis, list(position), yaw_quat(yaw), physicsClientId=self.cid)
        pb.changeDynamics(body, -1, lateralFriction=friction, physicsClientId=self.cid)
        return self.register(name, body)

    def create_compound(
        self, name: str, boxes: Sequence[tuple[Sequence[float], Sequence[float]]], position: Sequence[float], *,
        yaw: float = 0.0, color: Sequence[float] = (0.6, 0.6, 0.6, 1.0), friction: float = 0.8,
    ) -> int:
        """A static body made of boxes given as (size, centre offset) pairs."""
        halves = [[s / 2.0 for s in size] for size, _ in boxes]
        offsets = [list(offset) for _, offset in boxes]
        n = len(boxes)
        col = pb.createCollisionShapeArray([pb.GEOM_BOX] * n, halfExtents=halves, collisionFramePositions=offsets, physicsClientId=self.cid)
        vis = pb.createVisualShapeArray(
            [pb.GEOM_BOX] * n, halfExtents=halves, visualFramePositions=offsets, rgbaColors=[list(color)] * n,
            physicsClientId=self.cid,
        )
        body = pb.createMultiBody(0.0, col, vis, list(position), yaw_quat(yaw), physicsClientId=self.cid)
        pb.changeDynamics(body, -1, lateralFriction=friction, physicsClientId=self.cid)
        return self.register(name, body)

    def add_ground(self) -> int:
        col = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=self.cid)
        # A thin box as the visual: PyBullet has no default visual for a plane. Its top sits 1 mm below
        # z = 0 so a table or bin floor at z = 0 does not z-fight with it in camera images.
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[3, 3, 0.0005], visualFramePosition=[0, 0, -0.0015], rgbaColor=[0.82, 0.82, 0.78, 1.0], physicsClientId=self.cid)
        body = pb.createMultiBody(0.0, col, vis, [0, 0, 0], physicsClientId=self.cid)
        return self.register("ground", body)

    # --- state of bodies ------------------------------------------------------------------------
    def base_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        pos, orn = pb.getBasePositionAndOrientation(self._bodies[name], physicsClientId=self.cid)
        return np.asarray(pos), np.asarray(orn)

    def base_velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        lin, ang = pb.getBaseVelocity(self._bodies[name], physicsClientId=self.cid)
        return np.asarray(lin), np.asarray(ang)

    def set_base_pose(self, name: str, position: Sequence[float], yaw: float = 0.0, linear_velocity=(0, 0, 0)) -> None:
        body = self._bodies[name]
        pb.resetBasePositionAndOrientation(body, list(position), yaw_quat(yaw), physicsClientId=self.cid)
        pb.resetBaseVelocity(body, list(linear_velocity), [0, 0, 0], physicsClientId=self.cid)

    # --- time -----------------------------------------------------------------------------------
    def add_substep_hook(self, every: int, hook: Callable[[], None]) -> None:
        self._hooks.append((every, hook))
        self._schedule = None

    def remove_substep_hook(self, hook: Callable[[], None]) -> None:
        self._hooks = [(every, h) for every, h in self._hooks if h != hook]
        self._schedule = None

    def step(self) -> None:
        """Advance one control period: `substeps` physics steps."""
        cid = self.cid
        if self._hooks:
            schedule = self._schedule
            if schedule is None:  # which hooks are due after which substep, worked out once, not per substep
                schedule = self._schedule = [tuple(h for every, h in self._hooks if i % every == 0)
                                             for i in range(1, self.physics.substeps + 1)]
            for due in schedule:
                pb.stepSimulation(physicsClientId=cid)
                for hook in due:
                    hook()
        else:
            for _ in range(self.physics.substeps):
                pb.stepSimulation(physicsClientId=cid)
        self.time += self.physics.control_period
        self.steps += 1

    def save_state(self) -> int:
        return pb.saveState(physicsClientId=self.cid)

    def restore_state(self, state_id: int) -> None:
        pb.restoreState(stateId=state_id, physicsClientId=self.cid)
        self.time = 0.0
        self.steps += 1  # the world changed: invalidate cached state

    @contextlib.contextmanager
    def no_rendering(self) -> Iterator[None]:
        """Building a scene with rendering off is much faster in GUI mode."""
        if self.gui:
            pb.configureDebugVisualizer(pb.COV_ENABLE_RENDERING, 0, physicsClientId=self.cid)
        try:
            yield
        finally:
            if self.gui:
                pb.configureDebugVisualizer(pb.COV_ENABLE_RENDERING, 1, physicsClientId=self.cid)

    # --- images ---------------------------------------------------------------------------------
    def render(self, camera: CameraConfig, width: int | None = None, height: int | None = None) -> np.ndarray:
        """RGB uint8 image (H, W, 3) from a fixed scenario camera (orbit or position/look_at), optionally resized."""
        rgb, _, _ = self.render_image(fixed_model(camera, width, height), camera.near, camera.far)
        return rgb

    def render_image(self, camera: PinholeCamera, near: float, far: float, *, segmentation: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Render through a pinhole camera: RGB uint8 (H, W, 3), the raw depth buffer float32 (H, W) in [0, 1]
        (metres: far * near / (far - (far - near) * d)), and Bullet body ids int32 (H, W, -1 = none) if asked.

        Settings measured on the CPU renderer (bench/camera_throughput.py, 84x84, low-detail Panda cell,
        ~3.1 ms a frame): shadow=1 doubles the cost (a depth pass from the light), so shadows stay off;
        the segmentation mask costs nothing measurable (< 0.1 ms) but is only asked for when wanted;
        light settings change the look, not the cost, and stay PyBullet's defaults. The cost is mesh
        detail (Simulator.visual_detail) and pixels covered, not flags.
        """
        w, h = camera.width, camera.height
        flags = 0 if segmentation else pb.ER_NO_SEGMENTATION_MASK
        proj = camera.opengl_projection_matrix(near, far, renderer="opengl" if self.gui else "tiny")  # where each samples a pixel
        light = self.lighting.arguments()
        _, _, rgba, depth, seg = pb.getCameraImage(
            w, h, camera.opengl_view_matrix(), proj, shadow=0, flags=flags, renderer=self.renderer, physicsClientId=self.cid,
            **light,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()
        depth = np.asarray(depth, dtype=np.float32).reshape(h, w)
        ids = np.asarray(seg, dtype=np.int32).reshape(h, w) if segmentation else None
        return rgb, depth, ids

    def close(self) -> None:
        if getattr(self, "cid", -1) >= 0:
            try:
                pb.disconnect(physicsClientId=self.cid)
            except pb.error:
                pass
            self.cid = -1

    def __del__(self) -> None:  # a forgotten env must not leak a Bullet server
        self.close()


def yaw_quat(yaw: float) -> list[float]:
    return [0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)]
