"""Parts that arrive on the conveyor.

The pool's bodies are created once with the cell and parked off-stage in a row on the floor; a
spawn moves one onto the belt's upstream end with the belt's velocity. Creating bodies at build time
keeps body ids, and so the saved Bullet state, identical across resets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.schema import PartsConfig
from sim.simulator import Simulator

PARK_ORIGIN = np.array([4.0, 4.0, 0.0])  # m, far outside every cell
PARK_SPACING = 0.2  # m


@dataclass
class Part:
    name: str
    index: int
    body: int  # Bullet body id
    state: str = "parked"  # parked -> active (on the belt or held) -> placed | dropped
    spawn_time: float = 0.0
    settle_since: float | None = None
    resolved_time: float | None = None


class PartPool:
    def __init__(self, sim: Simulator, config: PartsConfig):
        self.sim, self.config = sim, config
        self.parts: list[Part] = []
        for i in range(config.count):
            name = f"part{i}"
            body = sim.create_box(name, config.size, self.park_position(i), mass=config.mass, color=config.color, friction=config.friction)
            self.parts.append(Part(name=name, index=i, body=body))

    def park_position(self, i: int) -> np.ndarray:
        return PARK_ORIGIN + np.array([PARK_SPACING * i, 0.0, self.config.size[2] / 2])

    def reset(self) -> None:
        for part in self.parts:
            part.state, part.spawn_time, part.settle_since, part.resolved_time = "parked", 0.0, None, None

    def spawn(self, part: Part, position: np.ndarray, yaw: float, velocity: np.ndarray, time: float) -> None:
        self.sim.set_base_pose(part.name, position, yaw, velocity)
        part.state, part.spawn_time = "active", time

    def current(self) -> Part | None:
        """The oldest part still to be handled: the one the robot should work on."""
        return next((p for p in self.parts if p.state == "active"), None)

    def all_resolved(self) -> bool:
        return all(p.state in ("placed", "dropped") for p in self.parts)
