"""Bin-sort's expert: a stateless funnel onto each part, then into its class's bin."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.observers import wrap_to_period
from sim.env import FactoryEnv
from sim.experts.base import Expert
from sim.tasks.bin_sort import BinSort


class BinSortExpert(Expert):
    """A stateless controller: every action is a function of the current state alone (no phases, no
    timers), so a memoryless policy can clone it and its labels stay consistent under DART noise.

    - Not holding the target: a funnel onto it. The tool aims over the part at a height that grows
      with the misalignment of the commanded tool pose (xy and yaw: the jaws turn to the part's yaw
      modulo its symmetry, any yaw for a cylinder), so it travels at hover height and goes down only
      when lined up; it closes at the grasp point (a top-down grasp) once the measured tool is there.
      The funnels read the command, not the measured tool: an arm sways a few centimetres when it
      starts or stops a vertical move, and a funnel on the measured pose would bounce on that sway.
    - Holding it: over the tote, straight up until the part clears the walls; elsewhere a funnel into
      the drop point over the part's bin from carry height, turning back to yaw 0 (so the next turn
      stays within the tool's yaw limits); it opens there.
    - The part over its bin, the jaws opening and still touching it: up over the drop point, open. Once it is
      let go, the task shows the next part at once (sim/tasks/bin_sort.py): no waiting for it to land, but
      the open jaws first rise straight up to CLEAR_Z, so they cannot sweep the falling part off its bin.

    Teaching a pixel student (`env.obs_mode == "pixels"`), two labels change so that each is a function of
    what the cameras show: a student cannot learn a label that points two ways from one image, and where
    it cannot it freezes (measured: driving DAgger rounds itself, it held still over the right bin and over
    cubes about 45 degrees off). The drop point becomes the nearest point of the bin's middle
    (SortBin.drop_point_near) instead of the next free quadrant, which depends on how many
    parts went in before; and the turn to a part's faces becomes a smooth function of the yaw error
    (period/2pi x sin(2pi x error/period)) instead of the shorter turn, which flips direction at half a
    period. And the descent and the grasp no longer wait for the jaws to be turned to a cube's faces (they
    still turn on the way down): jaws open 8 cm wide take a 4 cm cube at any yaw (an expert that never
    turns sorted 100 of 100), while a student unsure which way a cube is turned hovered over it until the
    time ran out (the expert's label: up, and turn one way or the other). All three keep the expert at 100%
    (bin-sort, 100 episodes).
    """

    HOVER = 0.10  # m over the grasp height when misaligned: the open jaws clear the neighbours and the walls
    # m of the tool point over the tote floor when closing: the jaw tips (up to 0.017 m below the tool
    # point) stay a few millimetres off the floor.
    GRASP_CLEARANCE = 0.022
    CARRY_Z = 0.26  # m: a hanging part clears the tote walls (0.10 m) and the bin walls (0.08 m)
    CLEAR_Z = 0.21  # m: a part lifted with the tool this high is above every wall and may move sideways
    XY_TOL = 0.008  # m of misalignment the grasp funnel ignores
    XY_GAIN = 10.0  # m of funnel height per m of misalignment beyond XY_TOL
    YAW_TOL = 0.03  # rad of yaw error the grasp funnel ignores
    YAW_GAIN = 1.0  # m of funnel height per rad of yaw error beyond YAW_TOL
    # m over the grasp height at which the jaws close (the descent goes on while they do). Not at the
    # grasp height itself: a cloned policy creeps to its goals and must not stall just short of a trigger.
    AT_GRASP = 0.018
    CLOSE_XY = 0.01  # m: the jaws close only this well centred on the part (they have 0.02 m to spare)
    CLOSE_YAW = 0.08  # rad: and this well turned to it
    # Once the jaws are closing (open less than fully by CLOSING), they keep closing within these looser
    # bounds: a grasp under way is finished, not abandoned for a few millimetres of sway.
    CLOSING = 0.004  # m
    KEEP_Z = 0.03  # m over the grasp height
    KEEP_XY = 0.02  # m
    AT_DROP = 0.025  # m over the drop point at which the jaws open (a margin for the same reason)
    # A drop needs far less precision than a grasp: anywhere within a few centimetres of the drop point
    # lands well inside the bin's walls.
    DROP_XY_TOL = 0.03  # m of misalignment the drop funnel ignores
    RELEASE_XY = 0.04  # m from the drop point in xy within which the jaws open
    SLOW_ZONE = 0.04  # m over the grasp height within which the tool moves at DESCEND_SPEED
    DESCEND_SPEED = 0.5  # fraction of full speed: a gentle last approach does not shove the part nor overshoot
    EMPTY_FRACTION = 0.5  # jaws closed below this fraction of the part's width hold nothing: open again
    # A part counts as in hand when both jaws touch it, or when it sits between jaws closed to within
    # GRIP_MARGIN of its width, this near the tool point: a jaw can lose contact for a step while a
    # carried part swings, and opening then would drop it.
    GRIP_MARGIN = 0.01  # m
    IN_JAWS = 0.02  # m

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: BinSort = env.task  # type: ignore[assignment]
        tote = self.task.tote.config
        self._tote_half = [s / 2 + tote.wall_thickness for s in tote.size]
        self._tote_xy = tote.position[:2]
        self._grasp_z = tote.position[2] + self.GRASP_CLEARANCE
        self._open = 2 * self.robot.model.finger_travel  # m between the jaws fully open
        self.camera_labels = env.obs_mode == "pixels"

    def act(self, obs: Any = None) -> np.ndarray:
        part = self.task.target_state()
        tool = np.array(self.robot.reading.tool_pos)
        unturn = -self.robot.target_yaw
        if part is None:  # every part resolved: hold still, open
            return self._toward(self.robot.target_pos, unturn, -1.0)
        pos = part["position"]
        command = self.robot.target_pos
        drop = self._drop_point(part, command)
        opening, width = self.robot.reading.opening, min(part["size"][:2])
        in_jaws = opening < width + self.GRIP_MARGIN and np.linalg.norm(tool - pos) < self.IN_JAWS
        if part["held"] or in_jaws:
            if self._over_tote(pos) and tool[2] < self.CLEAR_Z:  # straight up out of the tote
                return self._toward(np.array([pos[0], pos[1], self.CARRY_Z]), 0.0, 1.0)
            xy_err = float(np.linalg.norm(command[:2] - drop[:2]))
            height = np.clip((xy_err - self.DROP_XY_TOL) * self.XY_GAIN, 0.0, self.CARRY_Z - drop[2])
            release = np.linalg.norm(tool[:2] - drop[:2]) < self.RELEASE_XY and tool[2] < drop[2] + self.AT_DROP
            # Down into the bin gently: a loaded arm stopping a fast descent overshoots toward the walls.
            speed = self.DESCEND_SPEED if height < self.CARRY_Z - drop[2] else 1.0
            return self._toward(np.array([drop[0], drop[1], drop[2] + height]), unturn, -1.0 if release else 1.0, speed=speed)
        if self.task.over_bin(part["bin"], pos):  # being let go: up, open
            return self._toward(np.array([drop[0], drop[1], self.CARRY_Z]), unturn, -1.0)
        if tool[2] < self.CLEAR_Z and self.task.bin_under(tool) is not None:  # just let go
            return self._toward(np.array([command[0], command[1], self.CARRY_Z]), 0.0, -1.0)
        yaw_err = wrap_to_period(part["yaw"] - self.robot.target_yaw, part["yaw_period"])
        xy_err = float(np.linalg.norm(command[:2] - pos[:2]))
        miss = max(xy_err - self.XY_TOL, 0.0) * self.XY_GAIN
        if not self.camera_labels:  # a pixel student's labels do not wait for the turn (class doc)
            miss += max(abs(yaw_err) - self.YAW_TOL, 0.0) * self.YAW_GAIN
        goal = np.array([pos[0], pos[1], self._grasp_z + min(miss, self.HOVER)])
        off, low = float(np.linalg.norm(tool[:2] - pos[:2])), tool[2] - self._grasp_z
        at_grasp = low < self.AT_GRASP and off < self.CLOSE_XY and (self.camera_labels or abs(yaw_err) < self.CLOSE_YAW)
        closing = opening < self._open - self.CLOSING and low < self.KEEP_Z and off < self.KEEP_XY
        empty = opening < self.EMPTY_FRACTION * width
        speed = self.DESCEND_SPEED if low < self.SLOW_ZONE else 1.0
        return self._toward(goal, self._turn(yaw_err, part["yaw_period"]), 1.0 if (at_grasp or closing) and not empty else -1.0,
                            speed=speed)

    def _drop_point(self, part: dict, command: np.ndarray) -> np.ndarray:
        """Where to let go of the held part: the task's next free quadrant, or for a pixel student the point
        of the bin's middle nearest the commanded tool (the same for every fill of the bin)."""
        if not self.camera_labels:
            return part["drop_point"]
        return np.array(self.task.sort_bin(part["bin"]).drop_point_near(command[:2]))

    def _turn(self, yaw_err: float, period: float) -> float:
        """The yaw step toward the part's faces: the error itself, or for a pixel student a smooth function of it."""
        if not self.camera_labels or period == 0.0:
            return yaw_err
        return period / (2 * np.pi) * float(np.sin(2 * np.pi * yaw_err / period))

    def _over_tote(self, pos) -> bool:
        return all(abs(p - c) <= h for p, c, h in zip(pos[:2], self._tote_xy, self._tote_half))
