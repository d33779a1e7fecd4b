"""Parts: the cubes (or the user's mesh parts) that arrive on the conveyor, and typed parts (boxes,
cylinders, meshes) laid into a tote.

A pool's bodies are created once with the cell and parked off-stage in rows on the floor; a spawn
moves one into the scene (onto the belt's upstream end, or into the tote). Creating bodies at build
time keeps body ids, and so the saved Bullet state, identical across resets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pybullet as pb

from scenarios.schema import PartsConfig, PartTypeConfig
from sim.props.mesh import create_mesh_body
from sim.simulator import Simulator, yaw_quat

PARK_ORIGIN = np.array([4.0, 4.0, 0.0])  # m, far outside every cell
PARK_SPACING = 0.2  # m
# Typed parts park in rows of their own beside the conveyor pool's, one row per type.
TYPED_PARK_ORIGIN = PARK_ORIGIN + np.array([0.0, 0.5, 0.0])
# Bullet's rolling resistance coefficient (m) for cylinders: Bullet's default is none, so a cylinder
# that tips over rolls to and fro in a bin for ever; with it, it stops within a few centimetres.
CYLINDER_ROLLING_FRICTION = 0.002


@dataclass
class Part:
    name: str
    index: int
    body: int  # Bullet body id
    # parked -> active (on the belt, in the tote or held) -> placed | dropped (conveyor), sorted | wrong | dropped (tote)
    state: str = "parked"
    spawn_time: float = 0.0
    settle_since: float | None = None
    resolved_time: float | None = None
    type: PartTypeConfig | None = None  # typed parts (bin sort) only


def create_part_body(sim: Simulator, name: str, config: PartTypeConfig, position) -> int:
    """A dynamic box, upright cylinder or mesh of the type's size, mass, colour and friction."""
    if config.shape == "mesh":
        return create_mesh_body(sim, name, config.mesh, position, mass=config.mass, color=config.color, friction=config.friction)
    if config.shape == "box":
        return sim.create_box(name, config.size, position, mass=config.mass, color=config.color, friction=config.friction)
    radius, height, cid = config.size[0] / 2, config.size[2], sim.cid
    col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=radius, height=height, physicsClientId=cid)
    vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=radius, length=height, rgbaColor=list(config.color), physicsClientId=cid)
    body = pb.createMultiBody(config.mass, col, vis, list(position), yaw_quat(0.0), physicsClientId=cid)
    pb.changeDynamics(body, -1, lateralFriction=config.friction, rollingFriction=CYLINDER_ROLLING_FRICTION, physicsClientId=cid)
    return sim.register(name, body)


# Called with each part as it enters the scene (domain randomisation draws the part's mass, friction,
# colour... there); the env sets it on its pools.
SpawnHook = Callable[[Part], None]


class PartPool:
    def __init__(self, sim: Simulator, config: PartsConfig):
        self.sim, self.config = sim, config
        self.parts: list[Part] = []
        self.on_spawn: SpawnHook | None = None
        for i in range(config.count):
            name = f"part{i}"
            if config.mesh is not None:
                body = create_mesh_body(sim, name, config.mesh, self.park_position(i), mass=config.mass, color=config.color,
                                        friction=config.friction)
            else:
                body = sim.create_box(name, config.size, self.park_position(i), mass=config.mass, color=config.color, friction=config.friction)
            self.parts.append(Part(name=name, index=i, body=body))

    def park_position(self, i: int) -> np.ndarray:
        return PARK_ORIGIN + np.array([PARK_SPACING * i, 0.0, self.config.size[2] / 2])

    def reset(self) -> None:
        for part in self.parts:
            part.state, part.spawn_time, part.settle_since, part.resolved_time = "parked", 0.0, None, None

    def spawn(self, part: Part, position: np.ndarray, yaw: float, velocity: np.ndarray, time: float) -> None:
        if self.on_spawn is not None:
            self.on_spawn(part)
        self.sim.set_base_pose(part.name, position, yaw, velocity)
        part.state, part.spawn_time = "active", time

    def current(self) -> Part | None:
        """The oldest part still to be handled: the one the robot should work on."""
        return next((p for p in self.parts if p.state == "active"), None)

    def all_resolved(self) -> bool:
        return all(p.state in ("placed", "dropped") for p in self.parts)


class TypedPartPool:
    """`per_type` parked bodies of every part type, so any mix of types can be laid out in an episode."""

    def __init__(self, sim: Simulator, types: tuple[PartTypeConfig, ...], per_type: int):
        self.sim, self.types = sim, types
        self.on_spawn: SpawnHook | None = None
        self.by_type: list[list[Part]] = []
        self.parts: list[Part] = []  # every body, type by type
        for t, config in enumerate(types):
            row = []
            for k in range(per_type):
                name = f"{config.name}_{k}"
                body = create_part_body(sim, name, config, self.park_position(t, k))
                row.append(Part(name=name, index=len(self.parts), body=body, type=config))
                self.parts.append(row[-1])
            self.by_type.append(row)

    def park_position(self, type_index: int, k: int) -> np.ndarray:
        return TYPED_PARK_ORIGIN + np.array([PARK_SPACING * k, PARK_SPACING * type_index, self.types[type_index].size[2] / 2])

    def reset(self) -> None:
        """Every part back to the parked state (the saved Bullet state holds them at their park spots)."""
        for part in self.parts:
            part.state, part.spawn_time, part.settle_since, part.resolved_time = "parked", 0.0, None, None

    def lay_out(self, type_indices, poses, time: float) -> list[Part]:
        """Place one part of each listed type at (x, y, z, yaw), at rest; returns them in that order."""
        used = [0] * len(self.types)
        laid = []
        for t, (x, y, z, yaw) in zip(type_indices, poses):
            part = self.by_type[t][used[t]]
            used[t] += 1
            if self.on_spawn is not None:
                self.on_spawn(part)
            self.sim.set_base_pose(part.name, (x, y, z), yaw)
            part.state, part.spawn_time = "active", time
            laid.append(part)
        return laid
