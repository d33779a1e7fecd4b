"""Counting robot-fixture collisions, a factory KPI shared by every task."""

from __future__ import annotations

from sim.cell import Cell


class CollisionCounter:
    """Counts new robot contacts with fixtures; a contact held over many steps counts once.

    `links` maps a fixture body id to the one link that counts (None = any link), so a conveyor's
    frame counts while its belt, where parts are picked, does not.
    """

    def __init__(self, cell: Cell, extra: dict[int, int | None] | None = None):
        self.fixtures: dict[int, int | None] = {cell.sim.body(n): None for n in cell.fixture_names}
        self.fixtures.update(extra or {})
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self._touching: set[tuple[int, int]] = set()

    def update(self, contacts) -> int:
        """New collisions in this step's contact list (pybullet.getContactPoints(robot) rows)."""
        if not contacts and not self._touching:  # the usual step: nothing touches anything
            return 0
        touching = {(c[2], c[3]) for c in contacts if c[2] in self.fixtures and self.fixtures[c[2]] in (None, c[4])}
        new = len(touching - self._touching)
        self._touching = touching
        self.total += new
        return new
