"""Task registry: scenario `task.type` -> Task class."""

from sim.tasks.base import GoalTask, Task
from sim.tasks.bin_sort import BinSort
from sim.tasks.conveyor_pick import ConveyorPick
from sim.tasks.palletize import Palletize
from sim.tasks.reach import Reach

TASKS: dict[str, type[Task]] = {"reach": Reach, "conveyor_pick": ConveyorPick, "bin_sort": BinSort}
TASKS["palletize"] = Palletize

__all__ = ["TASKS", "GoalTask", "Task"]
