"""Static props made of boxes: tables, fixtures and open-top bins."""

from __future__ import annotations

import numpy as np

from scenarios.schema import BinConfig, BoxConfig
from sim.simulator import Simulator


def add_box_prop(sim: Simulator, config: BoxConfig) -> int:
    return sim.create_box(config.name, config.size, config.position, yaw=config.yaw, color=config.color)


class Bin:
    """An open-top box; `contains` tells whether a point lies inside its walls."""

    def __init__(self, sim: Simulator, config: BinConfig):
        self.config = config
        sx, sy = config.size
        t, h = config.wall_thickness, config.wall_height
        boxes = [
            ((sx + 2 * t, sy + 2 * t, t), (0, 0, -t / 2)),  # floor, its top at the bin position
            ((t, sy + 2 * t, h), (sx / 2 + t / 2, 0, h / 2)),
            ((t, sy + 2 * t, h), (-sx / 2 - t / 2, 0, h / 2)),
            ((sx, t, h), (0, sy / 2 + t / 2, h / 2)),
            ((sx, t, h), (0, -sy / 2 - t / 2, h / 2)),
        ]
        self.body = sim.create_compound(config.name, boxes, config.position, color=config.color)
        self.floor = np.asarray(config.position, dtype=float)

    @property
    def drop_point(self) -> np.ndarray:
        """Where a carried part should be released: centred, a little above the walls."""
        return self.floor + np.array([0.0, 0.0, self.config.wall_height + 0.06])

    def contains(self, point) -> bool:
        sx, sy = self.config.size
        fx, fy, fz = self.config.position
        return abs(point[0] - fx) <= sx / 2 and abs(point[1] - fy) <= sy / 2 and -0.01 <= point[2] - fz <= self.config.wall_height

