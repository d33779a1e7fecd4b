"""Parts arriving on a conveyor: when each comes, where across the belt and at what yaw.

Every arrival is drawn up front at reset, so the RNG stream does not depend on what the robot does;
a part due is set down at the belt's upstream end, in arrival order.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from scenarios.schema import RandomizationConfig
from sim.props.conveyor import Conveyor
from sim.props.parts import Part, PartPool

SPAWN_MARGIN = 0.03  # m between the belt's upstream end and a spawned part


class Infeed:
    def __init__(self, conveyor: Conveyor, parts: PartPool, randomization: RandomizationConfig):
        self.conveyor, self.parts, self.randomization = conveyor, parts, randomization
        # m along the belt from its centre where parts are set down
        self.spawn_along = -conveyor.config.length / 2 + parts.config.size[0] / 2 + SPAWN_MARGIN
        self.belt: list[float] = [0.0, 0.0, 0.0]
        self.arrivals: list[tuple[float, float, float]] = []  # per part: time (s), across (m), yaw (rad)
        self.next_arrival = math.inf

    def reset(self, rng: np.random.Generator) -> None:
        """Draw the episode's belt speed and every arrival; park every part."""
        r = self.randomization
        self.conveyor.reset(self.conveyor.config.belt_speed * rng.uniform(*r.belt_speed_scale))
        self.belt = self.conveyor.belt_velocity().tolist()  # constant over the episode
        self.parts.reset()
        t = rng.uniform(*r.first_arrival)
        self.arrivals = []
        for _ in self.parts.parts:
            self.arrivals.append((t, rng.uniform(*r.part_lateral_offset), rng.uniform(*r.part_yaw)))
            t += rng.uniform(*self.parts.config.spawn_interval)
        self.next_arrival = self.arrivals[0][0]

    def spawn_due(self, now: float, backed_up: Callable[[], bool] = lambda: False) -> list[Part]:
        """Set down the parts due by `now`, in order; while `backed_up()` the rest wait upstream. The parts set down."""
        spawned: list[Part] = []
        if now < self.next_arrival:
            return spawned
        height = self.parts.config.size[2] / 2 + 0.001
        for part, (t, across, yaw) in zip(self.parts.parts, self.arrivals):
            if part.state == "parked" and now >= t:
                if backed_up():
                    break
                pos = self.conveyor.point(self.spawn_along, across, height)
                self.parts.spawn(part, pos, self.conveyor.config.yaw + yaw, self.conveyor.belt_velocity(), now)
                spawned.append(part)
        # Arrival times increase with the part index: the next one due is the first still parked.
        self.next_arrival = next((t for p, (t, _, _) in zip(self.parts.parts, self.arrivals) if p.state == "parked"), math.inf)
        return spawned
