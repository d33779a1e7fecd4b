"""Where each box of a pallet pattern goes: the slots, layer by layer, row by row."""

from __future__ import annotations

import math
from typing import NamedTuple

from scenarios.schema import BoxConfig, PalletPattern

QUARTER_TURN = math.pi / 2


class Slot(NamedTuple):
    position: tuple[float, float, float]  # m, world: where the box's centre belongs
    yaw: float  # rad, world: the box's x axis
    layer: int


def pallet_top(pallet: BoxConfig) -> float:
    """Height (m) of the pallet's top face: layer 0's floor."""
    return pallet.position[2] + pallet.size[2] / 2


def pallet_slots(pattern: PalletPattern, box_size, pallet: BoxConfig) -> list[Slot]:
    """Every slot of the pattern on the pallet, in filling order (the i-th box goes to slot i).

    The grid is centred on the pallet's top face; a turned layer (alternate_rotation, odd layers) is
    layer 0's grid turned a quarter turn about that centre, boxes and all.
    """
    sx, sy, sz = box_size
    cx, cy, _ = pallet.position
    top = pallet_top(pallet)
    c, s = math.cos(pallet.yaw), math.sin(pallet.yaw)
    slots = []
    for layer in range(pattern.layers):
        turned = pattern.alternate_rotation and layer % 2 == 1
        for r in range(pattern.rows):
            for k in range(pattern.columns):
                u = (r - (pattern.rows - 1) / 2) * (sx + pattern.gap)
                v = (k - (pattern.columns - 1) / 2) * (sy + pattern.gap)
                if turned:
                    u, v = -v, u
                position = (cx + c * u - s * v, cy + s * u + c * v, top + (layer + 0.5) * sz)
                slots.append(Slot(position, _wrap(pallet.yaw + (QUARTER_TURN if turned else 0.0)), layer))
    return slots


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
