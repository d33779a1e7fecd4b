"""Scripted experts: controllers that read the simulator's true state (peg-insert's: only what a policy sees).

They act in the env's normalised action space, so their episodes can be recorded as demonstrations for
behaviour cloning. One module per task; `make_expert(env)` picks the one for the env's task.
"""

from __future__ import annotations

from sim.env import FactoryEnv
from sim.experts.base import Expert
from sim.experts.bin_sort import BinSortExpert
from sim.experts.conveyor_pick import ConveyorPickExpert
from sim.experts.palletize import PalletizeExpert
from sim.experts.peg_insert import PegInsertExpert
from sim.experts.reach import ReachExpert

EXPERTS: dict[str, type[Expert]] = {
    "reach": ReachExpert, "conveyor_pick": ConveyorPickExpert, "bin_sort": BinSortExpert,
    "peg_insert": PegInsertExpert, "palletize": PalletizeExpert,
}


def make_expert(env) -> Expert:
    base: FactoryEnv = env.unwrapped
    expert = EXPERTS[base.scenario.task.type](base)
    expert.reset()
    return expert


__all__ = ["EXPERTS", "BinSortExpert", "ConveyorPickExpert", "Expert", "PalletizeExpert", "PegInsertExpert", "ReachExpert",
           "make_expert"]
