"""Domain randomisation of one env: the dynamics / sensing / visuals sections of a scenario's `randomization:`.

Where each factor acts:

- dynamics: parts' mass, friction and restitution when each part spawns (the part pools' `on_spawn`
  hook); the robot's link masses, joint damping, motor gains and command delay at reset (Robot).
- sensing: noise on the observation the env hands the policy (`add_noise`); latency and frame drops in
  the pixels / perception cameras (CameraSensor.delay_frames, drop_frames), and in state mode, which
  has no camera, latency on the task's features (`delayed`). The robot's own readings and its commanded
  target are never late: a controller reads its encoders every servo cycle. Rewards, success and KPIs
  stay the simulator's truth.
- visuals: the simulator's Lighting, the colours of parts, tables, fixtures, bins, tote and conveyor,
  and each camera's pose and fov (CameraSensor.perturb; perception keeps the nominal calibration).

Every episode starts from the nominal values, so a factor that is not declared is exactly nominal.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any

import numpy as np
import pybullet as pb

from scenarios.naming import did_you_mean
from scenarios.schema import RandomizationConfig
from sim.cell import Cell
from sim.errors import SimError
from sim.props.parts import Part
from sim.sensors import CameraSensor
from sim.simulator import Simulator

Feature = tuple[str, int, str]  # name, size, unit: the observation's features in feature_spec() order


class RandomizationError(SimError):
    """A randomisation factor that does not fit the env it is applied to (e.g. an unknown noise feature)."""


def declared(config: RandomizationConfig) -> bool:
    """Whether any dynamics / sensing / visuals factor is on."""
    return any(getattr(config, s) is not None for s in ("dynamics", "sensing", "visuals"))


class DomainRandomizer:
    """Draws and applies the factors of one env. Call `begin_episode` at each reset, after the robot's
    reset and before the task's (parts laid out at reset draw theirs as they spawn)."""

    def __init__(self, config: RandomizationConfig, sim: Simulator, cell: Cell, sensors: dict[str, CameraSensor],
                 features: list[Feature]):
        self.dynamics, self.sensing, self.visuals = config.dynamics, config.sensing, config.visuals
        self.sim, self.cell, self.robot = sim, cell, cell.robot
        self.cameras = list(sensors.values())
        self.observing = [s for s in self.cameras if {"pixels", "perception"} & set(s.config.use)]
        self.rng: np.random.Generator | None = None
        self._source: Any = None  # the np_random self.rng was derived from
        self.noise_std = self._noise_std(features)
        self._history: deque | None = None
        cid, d, v = sim.cid, self.dynamics, self.visuals
        # Nominal values, read once from PyBullet, restored at every reset.
        self._nominal_light = sim.lighting
        pools = [p for p in (cell.parts, cell.typed_parts) if p is not None]
        self.parts = {part.body: _dynamics(part.body, -1, cid) for pool in pools for part in pool.parts}
        self._part_colors = {body: _colors(body, cid) for body in self.parts}
        if d is not None and any(getattr(d, f) is not None for f in ("part_mass_scale", "part_friction_scale", "part_restitution")) \
                or v is not None and v.color_jitter is not None:
            for pool in pools:
                pool.on_spawn = self.part_spawned
        body = self.robot.body
        self._links = {j: _dynamics(body, j, cid) for j in range(pb.getNumJoints(body, physicsClientId=cid))}
        self._damping = [pb.getJointInfo(body, j, physicsClientId=cid)[6] for j in self.robot.arm_ids]
        props = [sim.body(name) for name in cell.fixture_names]
        props += [b for b in (cell.conveyor.body if cell.conveyor else None, cell.tote.floor_body if cell.tote else None) if b is not None]
        self._prop_colors = {b: _colors(b, cid) for b in props}

    # --- per episode ----------------------------------------------------------------------------
    def begin_episode(self, np_random: np.random.Generator) -> None:
        if np_random is not self._source:
            # A generator of our own, derived when the env's np_random is (re)seeded and used for the whole
            # run after that: PCG64.jumped() returns a bit generator 2^127 steps ahead and leaves np_random
            # untouched (checked with Gymnasium's seeding.np_random), so the task draws the same parts,
            # goals and arrivals with and without randomisation, and one seed gives one randomised run.
            self.rng = np.random.Generator(np_random.bit_generator.jumped())
            self._source = np_random
        rng, cid, d, s, v = self.rng, self.sim.cid, self.dynamics, self.sensing, self.visuals
        for body, nominal in self.parts.items():  # spawns draw afresh
            _set_dynamics(body, -1, nominal, cid)
            if v is not None and v.color_jitter is not None:
                _paint(body, self._part_colors[body], cid)
        if d is not None:
            self._robot_dynamics(d, rng, cid)
        if s is not None:
            k = int(rng.integers(s.latency[0], s.latency[1] + 1)) if s.latency is not None else 0
            self._history = deque(maxlen=k + 1) if k > 0 else None
            for sensor in self.observing:
                sensor.drop_frames(s.frame_drop or 0.0, rng)
                sensor.delay_frames(k * self.sim.physics.control_period)
        if v is not None:
            self._visuals(v, rng, cid)

    def _robot_dynamics(self, d, rng: np.random.Generator, cid: int) -> None:
        body = self.robot.body
        if d.link_mass_scale is not None:
            for link, nominal in self._links.items():
                if nominal["mass"] > 0:
                    scale = rng.uniform(*d.link_mass_scale)
                    pb.changeDynamics(body, link, mass=nominal["mass"] * scale,
                                      localInertiaDiagonal=[i * scale for i in nominal["localInertiaDiagonal"]], physicsClientId=cid)
        if d.joint_damping is not None:
            for j, nominal in zip(self.robot.arm_ids, self._damping):
                pb.changeDynamics(body, j, jointDamping=nominal + rng.uniform(*d.joint_damping), physicsClientId=cid)
        kp, kd = self.robot.nominal_gains()
        if d.position_gain_scale is not None:
            kp = [g * rng.uniform(*d.position_gain_scale) for g in kp]
        if d.velocity_gain_scale is not None:
            kd = [g * rng.uniform(*d.velocity_gain_scale) for g in kd]
        self.robot.set_gains(kp, kd)
        if d.actuator_delay is not None:
            self.robot.set_command_delay(int(rng.integers(d.actuator_delay[0], d.actuator_delay[1] + 1)))

    def _visuals(self, v, rng: np.random.Generator, cid: int) -> None:
        light = self._nominal_light
        changes: dict[str, Any] = {}
        direction = np.asarray(light.direction, dtype=np.float64)
        if v.light_azimuth is not None:
            direction = _turn_about_vertical(direction, rng.uniform(-v.light_azimuth, v.light_azimuth))
        if v.light_direction is not None:
            direction = _tilt(direction, rng.uniform(0.0, v.light_direction), rng.uniform(0.0, 2 * math.pi))
        if v.light_azimuth is not None or v.light_direction is not None:
            changes["direction"] = tuple(float(c) for c in direction)
        if v.light_color_scale is not None:
            changes["color"] = tuple(float(c * rng.uniform(*v.light_color_scale)) for c in light.color)
        if v.ambient_scale is not None:
            changes["ambient"] = float(light.ambient * rng.uniform(*v.ambient_scale))
        if v.diffuse_scale is not None:
            changes["diffuse"] = min(1.0, float(light.diffuse * rng.uniform(*v.diffuse_scale)))
        if v.specular is not None:
            changes["specular"] = min(1.0, float(light.specular + rng.uniform(*v.specular)))
        self.sim.lighting = dataclasses.replace(light, **changes)
        if v.color_jitter is not None:
            for body, colors in self._prop_colors.items():
                _paint(body, colors, cid, v.color_jitter, rng)
        if any(f is not None for f in (v.camera_position, v.camera_rotation, v.camera_fov)):
            for sensor in self.cameras:
                offset = rng.uniform(-v.camera_position, v.camera_position, 3) if v.camera_position is not None else None
                turn = None
                if v.camera_rotation is not None:
                    quat = pb.getQuaternionFromEuler(rng.uniform(-v.camera_rotation, v.camera_rotation, 3).tolist())
                    turn = np.reshape(pb.getMatrixFromQuaternion(quat), (3, 3))
                fov = float(rng.uniform(-v.camera_fov, v.camera_fov)) if v.camera_fov is not None else 0.0
                sensor.perturb(offset, turn, fov)

    # --- per part, as it spawns -------------------------------------------------------------------
    def part_spawned(self, part: Part) -> None:
        rng, cid, d, v = self.rng, self.sim.cid, self.dynamics, self.visuals
        if rng is None:  # spawned outside an episode (never by the env): stay nominal
            return
        nominal, changes = self.parts[part.body], {}
        if d is not None and d.part_mass_scale is not None:
            scale = rng.uniform(*d.part_mass_scale)
            changes.update(mass=nominal["mass"] * scale, localInertiaDiagonal=[i * scale for i in nominal["localInertiaDiagonal"]])
        if d is not None and d.part_friction_scale is not None:
            changes["lateralFriction"] = nominal["lateralFriction"] * rng.uniform(*d.part_friction_scale)
        if d is not None and d.part_restitution is not None:
            changes["restitution"] = rng.uniform(*d.part_restitution)
        if changes:
            pb.changeDynamics(part.body, -1, physicsClientId=cid, **changes)
        if v is not None and v.color_jitter is not None:
            _paint(part.body, self._part_colors[part.body], cid, v.color_jitter, rng)

    # --- what the policy sees ---------------------------------------------------------------------
    def _noise_std(self, features: list[Feature]) -> np.ndarray | None:
        """Per observation value, the std of its noise (feature_spec order); None without noise."""
        noise = self.sensing.noise if self.sensing is not None else None
        if not noise:
            return None
        names = [name for name, _, _ in features]
        for name in noise:
            if name not in names:
                raise RandomizationError(f"randomization.sensing.noise: {name!r} is not an observation feature of this env"
                                         f"{did_you_mean(name, names)}; valid: {', '.join(names)}")
        return np.concatenate([np.full(size, noise.get(name, 0.0)) for name, size, _ in features])

    def add_noise(self, values: np.ndarray, std: np.ndarray) -> None:
        """Gaussian noise of `std` (one per value) added in place."""
        values += self.rng.normal(0.0, 1.0, values.shape) * std

    def delayed(self, values):
        """What was handed in `latency` control periods ago (the episode's first while there is none)."""
        if self._history is None:
            return values
        self._history.append(values)
        return self._history[0]


def _dynamics(body: int, link: int, cid: int) -> dict[str, Any]:
    info = pb.getDynamicsInfo(body, link, physicsClientId=cid)
    return {"mass": info[0], "lateralFriction": info[1], "localInertiaDiagonal": list(info[2]), "restitution": info[5]}


def _set_dynamics(body: int, link: int, values: dict[str, Any], cid: int) -> None:
    if values["mass"] > 0:
        pb.changeDynamics(body, link, physicsClientId=cid, **values)


def _colors(body: int, cid: int) -> dict[int, tuple[float, ...]]:
    """RGBA of each link's visual shapes (a compound body's share one colour)."""
    out: dict[int, tuple[float, ...]] = {}
    for shape in pb.getVisualShapeData(body, physicsClientId=cid):
        out.setdefault(shape[1], tuple(shape[7]))
    return out


def _paint(body: int, colors: dict[int, tuple[float, ...]], cid: int, jitter: float = 0.0, rng: np.random.Generator | None = None) -> None:
    """Each link's nominal colour, with each RGB channel moved by up to +-jitter (clipped to [0, 1])."""
    for link, rgba in colors.items():
        rgb = np.asarray(rgba[:3])
        if jitter > 0:
            rgb = np.clip(rgb + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)
        pb.changeVisualShape(body, link, rgbaColor=[*rgb.tolist(), rgba[3]], physicsClientId=cid)


def _turn_about_vertical(direction: np.ndarray, angle: float) -> np.ndarray:
    """`direction` turned by `angle` (rad) about the world z axis: the same height above the horizon, another side."""
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = direction
    return np.array([c * x - s * y, s * x + c * y, z])


def _tilt(direction: np.ndarray, angle: float, azimuth: float) -> np.ndarray:
    """`direction` turned by `angle` (rad) towards the perpendicular at `azimuth` (rad); its length kept."""
    length = np.linalg.norm(direction)
    d = direction / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    w = np.cross(d, u)
    axis = math.cos(azimuth) * u + math.sin(azimuth) * w
    return length * (math.cos(angle) * d + math.sin(angle) * axis)
