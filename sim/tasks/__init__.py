"""Task registry: scenario `task.type` -> Task class."""

from sim.tasks.base import GoalTask, Task
from sim.tasks.bin_sort import BinSort
from sim.tasks.conveyor_pick import ConveyorPick
from sim.tasks.palletize import Palletize
from sim.tasks.peg_insert import PegInsert
from sim.tasks.reach import Reach

TASKS: dict[str, type[Task]] = {
    "reach": Reach, "conveyor_pick": ConveyorPick, "bin_sort": BinSort, "peg_insert": PegInsert, "palletize": Palletize,
}

__all__ = ["TASKS", "GoalTask", "Task"]
