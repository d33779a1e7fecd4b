"""Static props made of boxes: tables, fixtures, open-top bins and the infeed tote."""

from __future__ import annotations

import numpy as np

from perception.observers import BinBox
from scenarios.schema import BinConfig, BoxConfig, ToteConfig
from sim.simulator import Simulator

BELOW_FLOOR = 0.01  # m under a floor a part centre may sink (contact penetration) and still be inside


def add_box_prop(sim: Simulator, config: BoxConfig) -> int:
    return sim.create_box(config.name, config.size, config.position, yaw=config.yaw, color=config.color)


def open_box_parts(size, wall_thickness: float, wall_height: float):
    """(floor, walls) of an open-top box as (size, centre offset) pairs; the floor's top at z = 0."""
    sx, sy = size
    t, h = wall_thickness, wall_height
    floor = ((sx + 2 * t, sy + 2 * t, t), (0, 0, -t / 2))
    walls = [
        ((t, sy + 2 * t, h), (sx / 2 + t / 2, 0, h / 2)),
        ((t, sy + 2 * t, h), (-sx / 2 - t / 2, 0, h / 2)),
        ((sx, t, h), (0, sy / 2 + t / 2, h / 2)),
        ((sx, t, h), (0, -sy / 2 - t / 2, h / 2)),
    ]
    return floor, walls


class Bin:
    """An open-top box; `contains` tells whether a point lies inside its walls."""

    def __init__(self, sim: Simulator, config: BinConfig):
        self.config = config
        floor, walls = open_box_parts(config.size, config.wall_thickness, config.wall_height)
        self.body = sim.create_compound(config.name, [floor, *walls], config.position, color=config.color)
        self.floor = np.asarray(config.position, dtype=float)
        self._inside = self.inside()  # the bin never moves: `contains` runs every step, so its box is made once

    @property
    def drop_point(self) -> np.ndarray:
        """Where a carried part should be released: centred, a little above the walls."""
        return self.floor + np.array([0.0, 0.0, self.config.wall_height + 0.06])

    def contains(self, point) -> bool:
        return self._inside.contains(point)

    def inside(self, above_walls: float = 0.0) -> BinBox:
        """The bin as a controller knows it: its drop point and the box of its inside, up to `above_walls` (m)
        over the wall tops (a part resting on another still counts as in)."""
        sx, sy = self.config.size
        fx, fy, fz = self.config.position
        top = fz + self.config.wall_height + above_walls
        return BinBox(tuple(self.drop_point.tolist()), (fx - sx / 2, fy - sy / 2, fz - BELOW_FLOOR), (fx + sx / 2, fy + sy / 2, top),
                      floor_z=fz)


class Tote:
    """The infeed tote: walls (body `name`, a fixture) and floor (body `name_floor`, where parts are
    picked from above: touching it is not a collision) as two bodies, so contacts tell them apart."""

    def __init__(self, sim: Simulator, config: ToteConfig):
        self.config = config
        floor, walls = open_box_parts(config.size, config.wall_thickness, config.wall_height)
        self.body = sim.create_compound(config.name, walls, config.position, color=config.color)
        self.floor_body = sim.create_compound(f"{config.name}_floor", [floor], config.position, color=config.color)
        self.floor = np.asarray(config.position, dtype=float)

    def inside(self, above_walls: float = 0.0) -> BinBox:
        """The box of the tote's inside, up to `above_walls` (m) over its wall tops (its centre as drop point)."""
        sx, sy = self.config.size
        fx, fy, fz = self.config.position
        top = fz + self.config.wall_height + above_walls
        return BinBox((fx, fy, top), (fx - sx / 2, fy - sy / 2, fz - BELOW_FLOOR), (fx + sx / 2, fy + sy / 2, top))
