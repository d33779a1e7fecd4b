"""Scripted experts: IK-based controllers that read the simulator's true state.

They produce actions in the env's normalised action space, so their episodes can be recorded as
demonstrations for behaviour cloning. Each expert is a small state machine with named phases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.localize import wrap_angle
from perception.observers import wrap_to_period
from sim.env import FactoryEnv
from sim.expert_base import Expert
from sim.palletize_expert import PalletizeExpert
from sim.tasks.bin_sort import BinSort
from sim.tasks.conveyor_pick import QUARTER_TURN, ConveyorPick
from sim.tasks.peg_insert import PegInsert
from sim.tasks.reach import Reach


class ReachExpert(Expert):
    def act(self, obs: Any = None) -> np.ndarray:
        task: Reach = self.env.task  # type: ignore[assignment]
        return self._toward(task.goal, 0.0, -1.0)


class ConveyorPickExpert(Expert):
    """approach -> descend -> close -> lift -> carry -> release -> retreat, intercepting the moving part."""

    HOVER = 0.10  # m above the part centre while lining up
    GRASP_DEPTH = 0.005  # m the tool point goes below the part centre
    CARRY_Z = 0.28  # m, safe height over the bin walls and the belt
    CLOSE_TIME = 0.25  # s of gripping before lifting
    RELEASE_TIME = 0.3  # s of open gripper before leaving the bin

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: ConveyorPick = env.task  # type: ignore[assignment]
        self.dt = env.scenario.physics.control_period

    def reset(self) -> None:
        self.phase, self.timer = "approach", 0.0

    def _set(self, phase: str) -> None:
        self.phase, self.timer = phase, 0.0

    def act(self, obs: Any = None) -> np.ndarray:
        self.timer += self.dt
        part = self.task.part_state()
        belt = self.task.conveyor.belt_velocity()
        ff = belt * self.dt
        tool = self.robot.tool_pose()[0]
        if part is None:  # nothing on the belt: wait above the pick zone, gripper open
            if self.phase not in ("approach",):
                self._set("approach")
            wait = self.task.conveyor.point(-0.15, 0.0, self.HOVER + 0.05)
            return self._toward(wait, 0.0, -1.0)
        pos = part["position"]
        yaw_err = wrap_angle(part["yaw"] - self.robot.target_yaw, QUARTER_TURN)
        lead = pos + belt * 0.1  # where the part will be when the arm gets there
        if self.phase == "approach":
            target = lead + np.array([0, 0, self.HOVER])
            if np.linalg.norm((tool - target)[:2]) < 0.01 and abs(yaw_err) < 0.05 and abs(tool[2] - target[2]) < 0.03:
                self._set("descend")
            return self._toward(target, yaw_err, -1.0, ff)
        if self.phase == "descend":
            target = pos + np.array([0, 0, -self.GRASP_DEPTH])
            if tool[2] - target[2] < 0.006:
                self._set("close")
            if np.linalg.norm((tool - pos)[:2]) > 0.02:
                self._set("approach")
            return self._toward(target, yaw_err, -1.0, ff, speed=0.5)
        if self.phase == "close":
            if self.timer >= self.CLOSE_TIME:
                self._set("lift")
            return self._toward(pos + np.array([0, 0, -self.GRASP_DEPTH]), 0.0, 1.0, ff)
        if self.phase == "lift":
            target = np.array([tool[0], tool[1], self.CARRY_Z])
            if not part["held"] and self.timer > 0.3:
                self._set("approach")
            elif tool[2] > self.CARRY_Z - 0.05:
                self._set("carry")
            return self._toward(target, 0.0, 1.0)
        drop = self.task.bin.drop_point
        if self.phase == "carry":
            over = np.array([drop[0], drop[1], max(self.CARRY_Z, drop[2])])
            if not part["held"]:
                self._set("approach")
            elif np.linalg.norm((tool - over)[:2]) < 0.02:
                self._set("lower")
            return self._toward(over, 0.0, 1.0)
        if self.phase == "lower":
            if tool[2] < drop[2] + 0.01:
                self._set("release")
            return self._toward(drop, 0.0, 1.0)
        if self.phase == "release":
            if self.timer >= self.RELEASE_TIME:
                self._set("retreat")
            return self._toward(drop, 0.0, -1.0)
        # retreat: back up over the bin; a new part will move the machine back to approach
        if not part["in_bin"] and not part["held"] and self.timer > 1.0:
            self._set("approach")
        return self._toward(np.array([drop[0], drop[1], self.CARRY_Z]), 0.0, -1.0)


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
    - The part over its bin, released: back up over the drop point, open, until the part rests.
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

    def act(self, obs: Any = None) -> np.ndarray:
        part = self.task.target_state()
        tool = np.array(self.robot.reading.tool_pos)
        unturn = -self.robot.target_yaw
        if part is None:  # every part resolved: hold still, open
            return self._toward(self.robot.target_pos, unturn, -1.0)
        pos, drop = part["position"], part["drop_point"]
        command = self.robot.target_pos
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
        if self.task.over_bin(part["bin"], pos):  # released (falling or resting): wait above, open
            return self._toward(np.array([drop[0], drop[1], self.CARRY_Z]), unturn, -1.0)
        yaw_err = wrap_to_period(part["yaw"] - self.robot.target_yaw, part["yaw_period"])
        xy_err = float(np.linalg.norm(command[:2] - pos[:2]))
        miss = max(xy_err - self.XY_TOL, 0.0) * self.XY_GAIN + max(abs(yaw_err) - self.YAW_TOL, 0.0) * self.YAW_GAIN
        goal = np.array([pos[0], pos[1], self._grasp_z + min(miss, self.HOVER)])
        off, low = float(np.linalg.norm(tool[:2] - pos[:2])), tool[2] - self._grasp_z
        at_grasp = low < self.AT_GRASP and off < self.CLOSE_XY and abs(yaw_err) < self.CLOSE_YAW
        closing = opening < self._open - self.CLOSING and low < self.KEEP_Z and off < self.KEEP_XY
        empty = opening < self.EMPTY_FRACTION * width
        speed = self.DESCEND_SPEED if low < self.SLOW_ZONE else 1.0
        return self._toward(goal, yaw_err, 1.0 if (at_grasp or closing) and not empty else -1.0, speed=speed)

    def _over_tote(self, pos) -> bool:
        return all(abs(p - c) <= h for p, c, h in zip(pos[:2], self._tote_xy, self._tote_half))


EXPERTS = {"reach": ReachExpert, "conveyor_pick": ConveyorPickExpert, "bin_sort": BinSortExpert}


EXPERTS["palletize"] = PalletizeExpert  # in a module of its own (sim/palletize_expert.py)


def make_expert(env) -> Expert:
    base: FactoryEnv = env.unwrapped
    expert = EXPERTS[base.scenario.task.type](base)
    expert.reset()
    return expert


# --- peg insert (issue 15) -----------------------------------------------------------------------------
class PegInsertExpert(Expert):
    """Insertion by touch, reading only what a policy sees: the nominal hole, the tool pose and the wrist F/T.

    approach over the nominal hole -> descend compliantly until the wrist feels the fixture -> if the
    tip is not in the hole, a spiral search around the nominal position, pressing lightly (the peg drops
    into the chamfer when it passes over the hole, and the lateral compliance centres it) -> insert,
    pressing with at most INSERT_FORCE, down to the declared depth. A stall with force (a jam) backs off
    and retries. Needs robot.compliance: the target is pressed into the part by force / stiffness.
    """

    HOVER = 0.02  # m of the tip over the hole's top after the fast approach
    CLEAR = 0.003  # m of the tip over the hole's top before descending
    CONTACT_FORCE = 2.0  # N of push that means the peg has met the fixture
    SEARCH_FORCE = 4.0  # N pressed while searching
    INSERT_FORCE = 8.0  # N pressed while inserting
    DROP = 0.0008  # m of depth below the contact height that means the tip found the hole
    PITCH = 0.0008  # m between spiral turns: less than the smallest clearance + 2 chamfers
    SEARCH_SPEED = 0.01  # m/s along the spiral
    SEARCH_RADIUS = 0.004  # m: the spiral restarts beyond this
    STALL_TIME = 1.0  # s without depth progress while pushing: back off and retry
    PRESS_SPEED = 0.008  # m/s of the target into the part while pressing
    SLOW = 0.04  # fraction of full speed toward the fixture: a 4 mm/s touch keeps the impact well under the limit

    def __init__(self, env: FactoryEnv):
        super().__init__(env)
        self.task: PegInsert = env.task  # type: ignore[assignment]
        if self.robot.compliance is None:
            raise ValueError("the peg-insert expert presses by force / stiffness: it needs robot.compliance")
        self.dt = env.scenario.physics.control_period
        self.kz = self.robot.config.compliance.stiffness[2]
        self.grip = self.task.peg.grip

    def reset(self) -> None:
        self.phase, self.timer, self.theta = "approach", 0.0, 0.0
        self.contact_depth = None
        self.best_depth, self.best_at = -1.0, 0.0

    def _set(self, phase: str) -> None:
        self.phase, self.timer = phase, 0.0

    def act(self, obs: Any = None) -> np.ndarray:
        self.timer += self.dt
        task, robot = self.task, self.robot
        nx, ny, nz = task.nominal
        tool = np.array(robot.reading.tool_pos)
        tip_z = tool[2] - task.peg.tip_offset
        depth = nz - tip_z
        push = -robot.reading.wrench[2]  # N: the fixture pushing back against the approach direction
        above = nz + task.peg.tip_offset  # tool height with the tip at the hole's top
        yaw = -robot.target_yaw
        if self.phase == "approach":  # at full speed to well above the hole: the arm sways as it stops
            goal = np.array([nx, ny, above + self.HOVER])
            if np.max(np.abs(tool - goal)) < 0.001:
                self._set("lower")
            return self._toward(goal, yaw, self.grip)
        if self.phase == "lower":
            goal = np.array([nx, ny, above + self.CLEAR])
            if np.max(np.abs(tool - goal)) < 0.0005:
                self._set("descend")
            return self._toward(goal, yaw, self.grip, speed=0.2)
        if self.phase == "descend":
            if push > self.CONTACT_FORCE or depth > self.DROP:
                self.contact_depth = depth
                self._set("insert" if depth > self.DROP else "search")
            return self._toward(np.array([nx, ny, tool[2] - 0.004]), yaw, self.grip, speed=self.SLOW)
        if self.phase == "search":
            if depth > self.contact_depth + self.DROP:
                self._set("insert")
            else:
                r = self.PITCH * self.theta / (2 * np.pi)
                self.theta += self.SEARCH_SPEED * self.dt / max(r, self.PITCH)
                if r > self.SEARCH_RADIUS:
                    self.theta = 0.0
                target = robot.target_pos
                goal = np.array([nx + r * np.cos(self.theta), ny + r * np.sin(self.theta), target[2] + self._press(push, self.SEARCH_FORCE)])
                return self._toward(goal, yaw, self.grip)
        if self.phase == "insert":
            if depth > self.best_depth + 0.0005:
                self.best_depth, self.best_at = depth, self.timer
            if self.timer - self.best_at > self.STALL_TIME:  # jammed: back off and retry
                self._set("back_off")
            target = robot.target_pos
            return self._toward(target + np.array([0.0, 0.0, self._press(push, self.INSERT_FORCE)]), yaw, self.grip)
        # back_off: up a little, then insert again
        if self.timer > 0.3:
            self.best_depth, self.best_at = depth, 0.0
            self._set("insert")
        return self._toward(robot.target_pos + np.array([0.0, 0.0, 0.002]), yaw, self.grip, speed=self.SLOW)

    def _press(self, push: float, force: float) -> float:
        """z step of the target (m) that regulates the push toward `force` N: down at PRESS_SPEED when free,
        still at `force`, up above it. Slow enough that one control period's step into a stiff contact
        stays a few newtons: the admittance reacts once per period."""
        return -self.PRESS_SPEED * self.dt * float(np.clip((force - push) / force, -1.0, 1.0))


EXPERTS["peg_insert"] = PegInsertExpert
