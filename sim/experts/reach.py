"""Reach's expert: straight to the goal."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experts.base import Expert
from sim.tasks.reach import Reach


class ReachExpert(Expert):
    def act(self, obs: Any = None) -> np.ndarray:
        task: Reach = self.env.task  # type: ignore[assignment]
        return self._toward(task.goal, 0.0, -1.0)
