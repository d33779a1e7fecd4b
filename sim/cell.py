"""Builds the physical cell of a scenario: ground, tables, fixtures, bins, conveyor, tote, robot, parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from scenarios.schema import BinSortTask, PegInsertTask, Scenario
from sim.props.boxes import Bin, Tote, add_box_prop
from sim.props.conveyor import Conveyor
from sim.props.parts import PartPool, TypedPartPool
from sim.props.peg_hole import HoleFixture, Peg
from sim.robots import make_robot
from sim.robots.base import Robot
from sim.simulator import Simulator


@dataclass
class Cell:
    sim: Simulator
    robot: Robot
    bins: dict[str, Bin] = field(default_factory=dict)
    conveyor: Conveyor | None = None
    parts: PartPool | None = None
    tote: Tote | None = None
    typed_parts: TypedPartPool | None = None  # bin sort: parts_per_episode bodies of every type
    peg: Peg | None = None  # peg insert: the peg in the hand and the fixture with the hole
    hole: HoleFixture | None = None
    # Bodies the robot must not touch; a touch counts as a collision in the KPIs.
    fixture_names: list[str] = field(default_factory=list)


def build_cell(sim: Simulator, scenario: Scenario) -> Cell:
    with sim.no_rendering():
        sim.add_ground()
        robot = make_robot(sim, scenario.robot)
        cell = Cell(sim=sim, robot=robot)
        for table in scenario.tables:
            add_box_prop(sim, table)
            cell.fixture_names.append(table.name)
        for fixture in scenario.fixtures:
            add_box_prop(sim, fixture)
            cell.fixture_names.append(fixture.name)
        for config in scenario.bins:
            cell.bins[config.name] = Bin(sim, config)
            cell.fixture_names.append(config.name)
        if scenario.conveyor is not None:
            cell.conveyor = Conveyor(sim, scenario.conveyor)
        if scenario.parts is not None:
            cell.parts = PartPool(sim, scenario.parts)
        if isinstance(scenario.task, BinSortTask):
            cell.tote = Tote(sim, scenario.task.tote)
            cell.fixture_names.append(scenario.task.tote.name)  # the walls; the floor body is not a fixture
            # Any episode may draw every part of one type: keep that many of each.
            cell.typed_parts = TypedPartPool(sim, scenario.task.part_types, scenario.task.parts_per_episode)
        if isinstance(scenario.task, PegInsertTask):
            cell.peg = Peg(sim, robot, scenario.task.peg)
            cell.hole = HoleFixture(sim, scenario.task.hole, scenario.task.peg.width)
            cell.fixture_names.extend(cell.hole.names)  # the robot must not touch it; the peg may
    return cell

