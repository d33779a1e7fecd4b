"""A robot arm with a tool (a parallel gripper, or a suction cup: sim/robots/suction.py), driven by end-effector or joint deltas.

`RobotModel` is the static description (readable without a simulator: the bridge and the bundle
manifest publish it); `Robot` is that model loaded into one `Simulator`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pybullet as pb

from scenarios.schema import RobotConfig
from sim.robots.compliance import Admittance
from sim.robots.ik import KinematicCopy
from sim.robots.suction import SuctionCup
from sim.robots.tool_down_ik import to_base_frame
from sim.robots.wrist_ft import WristFT
from sim.simulator import Simulator, yaw_quat


@dataclass(frozen=True)
class RobotModel:
    name: str
    urdf_path: Path
    arm_joints: tuple[str, ...]
    finger_joints: tuple[str, ...]  # prismatic, each travels 0 (closed) .. finger_travel (open)
    tool_link: str  # the point between the fingertips that IK places
    home: tuple[float, ...]  # rad
    finger_travel: float  # m per finger
    finger_force: float  # N per finger
    workspace_low: tuple[float, float, float]  # m, tool target box in the robot's base frame
    workspace_high: tuple[float, float, float]
    rated_payload: float  # kg
    source: str  # where the numbers come from
    # (x, y, z, yaw in the base frame, previous joint command) -> joint targets, tool pointing down;
    # without one, PyBullet's iterative IK on a kinematic copy (sim/robots/ik.py) does the job.
    tool_down_ik: Callable[[float, float, float, float, list[float]], list[float]] | None = None
    tool_yaw_offset: float = 0.0  # rad: tool yaw reported when the last joint sits at its home angle
    link_friction: dict[str, float] = field(default_factory=dict)
    # The same robot with cheap visuals (same links, joints, inertials and collisions), loaded when the
    # simulator asks for low visual detail (camera observations); None: urdf_path is already cheap to draw.
    low_detail_urdf: Callable[[], Path] | None = None
    # ((z, r), ...) in the base frame, z ascending: at height z the tool reaches r m from the base's vertical
    # axis pointing down. Tool targets are kept within it (interpolated; none outside the heights given),
    # so an arm asked beyond its reach stays at the asked height instead of sagging into what lies below.
    # Empty: the workspace box alone (the built-in arms reach every point of theirs).
    tool_down_reach: tuple[tuple[float, float], ...] = ()
    # The fixed joint between the flange and the tool, where a wrist F/T sensor (robot.wrist_ft) reads; None: none fitted.
    wrist_joint: str | None = None
    # A suction tool's cup link (the tool is a vacuum cup, robot.tool type suction; no finger joints); None: a gripper.
    suction_link: str | None = None


# How many control periods of rated joint travel a command may lead the measured joints by.
LAG_PERIODS = 1.0
# The tool target (ee_delta control) stays within this of the measured tool, so a blocked arm does not wind up.
TOOL_TARGET_MAX_LAG = 0.08  # m
# The tool target's yaw stays within +-this: the tool turns a quarter either way from its home yaw.
TOOL_YAW_LIMIT = math.pi / 2  # rad


class ArmReading(NamedTuple):
    """The arm's state read once per control step, as plain floats: the step loop reads these many
    times, and Python floats cost far less there than small numpy arrays (bench/sim_throughput.py)."""

    tool_pos: tuple[float, float, float]  # m, world
    tool_yaw: float  # rad
    tool_vel: tuple[float, float, float]  # m/s, world
    opening: float  # m between the fingers; a suction tool: 1.0 while sealed on a part, else 0.0
    q: list[float]  # rad, arm joints
    # N, N m: the wrist F/T sensor's (force xyz, torque xyz) in the tool frame; empty without a sensor, so
    # cells without one keep their observation layout.
    wrench: tuple[float, ...] = ()


class Robot:
    """One loaded arm. Commands go to PyBullet position motors; state reads are batched per step."""

    model: RobotModel

    def __init__(self, sim: Simulator, model: RobotModel, config: RobotConfig, name: str = "robot"):
        self.sim, self.model, self.config, self.name = sim, model, config, name
        self.home = np.asarray(config.home if config.home is not None else model.home, dtype=float)
        low = sim.visual_detail == "low" and model.low_detail_urdf is not None
        self.body = sim.load_urdf(name, model.low_detail_urdf() if low else model.urdf_path, config.base_position, config.base_yaw, fixed=True)
        cid = sim.cid
        index = {pb.getJointInfo(self.body, j, physicsClientId=cid)[1].decode(): j for j in range(pb.getNumJoints(self.body, physicsClientId=cid))}
        links = {pb.getJointInfo(self.body, j, physicsClientId=cid)[12].decode(): j for j in range(pb.getNumJoints(self.body, physicsClientId=cid))}
        missing = [j for j in model.arm_joints + model.finger_joints if j not in index]
        if missing or model.tool_link not in links:
            raise ValueError(f"{model.urdf_path}: missing joints {missing} or tool link {model.tool_link!r}")
        if len(self.home) != len(model.arm_joints):
            raise ValueError(f"robot.home has {len(self.home)} angles, {model.name} has {len(model.arm_joints)} arm joints")
        self.arm_ids = [index[j] for j in model.arm_joints]
        self.finger_ids = [index[j] for j in model.finger_joints]
        self.tool_id = links[model.tool_link]
        infos = [pb.getJointInfo(self.body, j, physicsClientId=cid) for j in self.arm_ids]
        self.lower = np.array([i[8] for i in infos])
        self.upper = np.array([i[9] for i in infos])
        self.max_force = np.array([i[10] for i in infos])
        self.max_velocity = np.array([i[11] for i in infos])
        # IK and state reads work over every movable joint in joint-index order: the arm's, then the
        # fingers' (required, so the step loop can slice instead of gathering).
        self._movable = [j for j in range(pb.getNumJoints(self.body, physicsClientId=cid)) if pb.getJointInfo(self.body, j, physicsClientId=cid)[2] != pb.JOINT_FIXED]
        suction = config.suction
        if (suction is not None) != (model.suction_link is not None):
            raise ValueError(f"robot.tool is {'suction' if suction else 'a parallel gripper'} but the {model.name} model "
                             f"loaded from {model.urdf_path} carries {'a suction cup' if model.suction_link else 'a gripper'}")
        self.suction = SuctionCup(sim, self.body, links[model.suction_link], suction) if suction is not None else None
        if self._movable != self.arm_ids + self.finger_ids:
            raise ValueError(f"{model.urdf_path}: the movable joints must be the arm joints, then the finger joints, in URDF order")
        self._n_arm = len(self.arm_ids)
        self._ik = None if model.tool_down_ik else KinematicCopy(model.urdf_path, config.base_position, yaw_quat(config.base_yaw), self._movable, self.tool_id)
        self._finger_seed = [model.finger_travel] * len(self.finger_ids)  # fingers do not move the tool
        for link, mu in model.link_friction.items():
            pb.changeDynamics(self.body, links[link], lateralFriction=mu, physicsClientId=cid)
        if len(self.finger_ids) == 2:
            # Real parallel jaws are geared together. Two independent force-limited motors squeezing
            # a part are in neutral equilibrium, and the part drifts toward one jaw as it is carried.
            gear = pb.createConstraint(self.body, self.finger_ids[0], self.body, self.finger_ids[1], pb.JOINT_GEAR,
                                       [1, 0, 0], [0, 0, 0], [0, 0, 0], physicsClientId=cid)
            pb.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=model.finger_force, physicsClientId=cid)  # q1 = q2
        self._base_xyz = tuple(float(v) for v in config.base_position)
        self._world_box = tuple((b + lo, b + hi) for b, lo, hi in zip(self._base_xyz, model.workspace_low, model.workspace_high))
        self._base_yaw = config.base_yaw
        self._reach = (np.array([z for z, _ in model.tool_down_reach]) + self._base_xyz[2],
                       np.array([r for _, r in model.tool_down_reach])) if model.tool_down_reach else None
        self._target = (0.0, 0.0, 0.0)
        self.target_yaw = 0.0
        self.grip_command = -1.0
        # Per-step constants, prepared once: the env step is a hot loop (see bench/sim_throughput.py).
        self._forces = list(self.max_force)
        self._zero_velocities = [0.0] * self._n_arm
        self._kp, self._kd = [config.position_gain] * self._n_arm, [config.velocity_gain] * self._n_arm
        q_step = self.max_velocity * sim.physics.control_period  # rad per control period at rated speed
        self._q_step = q_step.tolist()
        self._q_lag = (LAG_PERIODS * q_step).tolist()
        self._lower, self._upper = self.lower.tolist(), self.upper.tolist()
        self._finger_cmd: float | None = None
        self._q_cmd: list[float] = self.home.tolist()
        self._fresh_at = -1
        # Actuator delay (domain randomisation): commands wait in this FIFO before the motors get them.
        self._pending: deque[tuple[list[float], float]] | None = None
        # Wrist F/T sensor and compliant mode (robot.wrist_ft / robot.compliance), off unless declared.
        self.wrist: WristFT | None = None
        self.compliance: Admittance | None = None
        if config.wrist_ft is not None:
            if model.wrist_joint is None or model.wrist_joint not in index:
                raise ValueError(f"robot.wrist_ft: {model.name} has no flange-to-tool joint for a wrist sensor"
                                 + (f" ({model.wrist_joint!r} is not in {model.urdf_path})" if model.wrist_joint else ""))
            self.wrist = WristFT(self, config.wrist_ft, index[model.wrist_joint])
        if config.compliance is not None:
            self.compliance = Admittance(config.compliance, sim.physics.control_period)

    # --- reset ----------------------------------------------------------------------------------
    def reset(self, joint_noise: float = 0.0, rng: np.random.Generator | None = None) -> None:
        q = self.home.copy()
        if joint_noise > 0 and rng is not None:
            q = np.clip(q + rng.uniform(-joint_noise, joint_noise, size=q.shape), self.lower, self.upper)
        cid = self.sim.cid
        for j, angle in zip(self.arm_ids, q):
            pb.resetJointState(self.body, j, float(angle), 0.0, physicsClientId=cid)
        for j in self.finger_ids:
            pb.resetJointState(self.body, j, self.model.finger_travel, 0.0, physicsClientId=cid)
        self._q_cmd = q.tolist()
        self._finger_cmd = None
        if self.suction is not None:
            self.suction.reset()
        self._pending = None  # a new episode starts undelayed; set_command_delay() after reset
        if self.wrist is not None:
            self.wrist.reset(rng)
        if self.compliance is not None:
            self.compliance.reset()
        self.refresh()
        self._target, self.target_yaw = self.reading.tool_pos, self.tool_yaw
        self.grip_command = -1.0
        self._send(self._q_cmd, -1.0)

    def refresh(self) -> None:
        """Read the arm's state once per control step (two Bullet calls); the env and task use it."""
        self._fresh_at = self.sim.steps
        cid = self.sim.cid
        # Forward kinematics on: after stepSimulation the link frames Bullet keeps are a substep old.
        # Positional arguments in the per-step Bullet calls: PyBullet parses keywords by name, which cost
        # getLinkState's 4 of them ~1.7 us a call here (computeLinkVelocity, computeForwardKinematics, physicsClientId).
        s = pb.getLinkState(self.body, self.tool_id, 1, 1, cid)
        states = pb.getJointStates(self.body, self._movable, cid)
        q = [st[0] for st in states]
        if self.suction is None:
            opening = sum(q[self._n_arm:])
        else:  # the cup seals (or loses its part) on what this physics step did
            self.suction.update()
            opening = 1.0 if self.suction.sealed else 0.0
        if self.wrist is None:
            self.reading = ArmReading(s[4], tool_yaw(s[5]), s[6], opening, q[: self._n_arm])
        else:
            self.reading = ArmReading(s[4], tool_yaw(s[5]), s[6], opening, q[: self._n_arm], self.wrist.read(s[5]))

    def contacts(self) -> tuple:
        """Every contact point of the robot after the last physics step (pybullet.getContactPoints rows),
        for the task's grasp and collision checks: one query per control step."""
        return pb.getContactPoints(self.body, -1, -2, -2, self.sim.cid)  # bodyB any, linkIndexA/B any; positional (see refresh)

    def command_offset(self) -> list[float]:
        """The commanded tool target minus the measured tool now (m, world) and target yaw minus tool yaw (rad),
        as plain floats for the step loop: what is still on its way to the motors."""
        (tx, ty, tz), r = self._target, self.reading
        px, py, pz = r.tool_pos
        return [tx - px, ty - py, tz - pz, self.target_yaw - r.tool_yaw]

    # Numpy copies of the last reading, for code outside the step loop.
    @property
    def tool_pos(self) -> np.ndarray:
        return np.array(self.reading.tool_pos)

    @property
    def target_pos(self) -> np.ndarray:
        """The tool target that ee-delta commands integrate (m, world)."""
        return np.array(self._target)

    @target_pos.setter
    def target_pos(self, value) -> None:
        self._target = tuple(float(v) for v in value)

    @property
    def tool_vel(self) -> np.ndarray:
        return np.array(self.reading.tool_vel)

    @property
    def tool_yaw(self) -> float:
        return self.reading.tool_yaw

    @property
    def q(self) -> np.ndarray:
        return np.array(self.reading.q)

    @property
    def opening(self) -> float:
        return self.reading.opening

    # --- state ----------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        states = pb.getJointStates(self.body, self.arm_ids, physicsClientId=self.sim.cid)
        return np.array([s[0] for s in states])

    def gripper_opening(self) -> float:
        """Distance between the fingers (m); a suction tool: 1.0 while sealed, else 0.0."""
        if self.suction is not None:
            return 1.0 if self.suction.sealed else 0.0
        states = pb.getJointStates(self.body, self.finger_ids, physicsClientId=self.sim.cid)
        return float(sum(s[0] for s in states))

    def tool_pose(self) -> tuple[np.ndarray, float]:
        state = pb.getLinkState(self.body, self.tool_id, computeForwardKinematics=1, physicsClientId=self.sim.cid)
        return np.asarray(state[4]), tool_yaw(state[5])

    # --- commands -------------------------------------------------------------------------------
    def command_tool_delta(self, delta_pos: Sequence[float], delta_yaw: float, grip: float) -> None:
        """Move the tool target by a Cartesian delta (world frame, m / rad) and set the gripper.

        The target integrates the deltas (so small steps accumulate exactly) but stays within the
        workspace box and within TOOL_TARGET_MAX_LAG of the measured tool, so a blocked arm does not wind up.
        """
        max_lag = TOOL_TARGET_MAX_LAG
        self._ensure_fresh()
        px, py, pz = self.reading.tool_pos
        (tx, ty, tz), (dx, dy, dz) = self._target, delta_pos
        tx, ty, tz = self.clip_to_workspace((tx + dx, ty + dy, tz + dz))
        if self._reach is not None:
            tx, ty, tz = self._clip_to_reach(tx, ty, tz)
        lx, ly, lz = tx - px, ty - py, tz - pz
        dist = math.sqrt(lx * lx + ly * ly + lz * lz)
        if dist > max_lag:
            f = max_lag / dist
            tx, ty, tz = px + lx * f, py + ly * f, pz + lz * f
        self._target = (tx, ty, tz)
        yaw = self.target_yaw + delta_yaw
        self.target_yaw = -TOOL_YAW_LIMIT if yaw < -TOOL_YAW_LIMIT else TOOL_YAW_LIMIT if yaw > TOOL_YAW_LIMIT else yaw
        if self.compliance is not None:  # admittance: the command yields to the sensed force (sim/robots/compliance.py)
            cx, cy, cz = self.compliance.update(self.wrist.world_force())
            tx, ty, tz = tx + cx, ty + cy, tz + cz
        self.command_joint_positions(self.inverse_kinematics((tx, ty, tz), self.target_yaw), grip)

    def command_tool_pose(self, position: Sequence[float], yaw: float, grip: float) -> None:
        """Servo the tool toward a pose; call once per control step."""
        self.command_joint_positions(self.inverse_kinematics(position, yaw), grip)

    def command_joint_delta(self, delta_q: Sequence[float], grip: float) -> None:
        self.command_joint_positions([q + d for q, d in zip(self._q_cmd, delta_q)], grip)

    def command_joint_positions(self, q: Sequence[float], grip: float) -> None:
        """Joint targets, clamped to the URDF limits and to each joint's rated speed over one control period.

        A target also stays within one period's rated travel of where each joint is: commands far
        ahead of a torque-limited arm make it overshoot and swing.
        """
        self._ensure_fresh()
        cmd = []
        for target, last, now, step, lag, lo, hi in zip(q, self._q_cmd, self.reading.q, self._q_step, self._q_lag, self._lower, self._upper):
            # Clamps written out: builtin min/max calls cost more than the comparisons themselves.
            target = float(target)
            target = last - step if target < last - step else last + step if target > last + step else target
            target = now - lag if target < now - lag else now + lag if target > now + lag else target
            cmd.append(lo if target < lo else hi if target > hi else target)
        self._q_cmd = cmd
        self._send(cmd, grip)

    def _ensure_fresh(self) -> None:
        if self._fresh_at != self.sim.steps:
            self.refresh()

    def inverse_kinematics(self, position: Sequence[float], yaw: float) -> list[float]:
        """Joint targets for the tool pose: the model's closed form, else iterative IK from the last command."""
        yaw -= self.model.tool_yaw_offset
        if self.model.tool_down_ik is not None:
            x, y, z, base_yaw = to_base_frame(position, yaw, self._base_xyz, self._base_yaw)
            return self.model.tool_down_ik(x, y, z, base_yaw, self._q_cmd)
        sol = self._ik.solve(self._q_cmd + self._finger_seed, position, tool_down_quat(yaw))
        return list(sol[: self._n_arm])

    def clip_to_workspace(self, world_pos: Sequence[float]) -> tuple[float, float, float]:
        x, y, z = world_pos
        if self._base_yaw == 0.0:  # the common case: an axis-aligned box in the world
            (xl, xh), (yl, yh), (zl, zh) = self._world_box
            return (xl if x < xl else xh if x > xh else x, yl if y < yl else yh if y > yh else y, zl if z < zl else zh if z > zh else z)
        lo, hi = self.model.workspace_low, self.model.workspace_high
        u, v, w, _ = to_base_frame(world_pos, 0.0, self._base_xyz, self._base_yaw)
        u, v, w = min(max(u, lo[0]), hi[0]), min(max(v, lo[1]), hi[1]), min(max(w, lo[2]), hi[2])
        bx, by, bz = self._base_xyz
        c, s = math.cos(self._base_yaw), math.sin(self._base_yaw)
        return (c * u - s * v + bx, s * u + c * v + by, w + bz)

    def _clip_to_reach(self, x: float, y: float, z: float) -> tuple[float, float, float]:
        """Pull a world target toward the base's vertical axis, at its height, to within the tool-down reach."""
        heights, radii = self._reach
        z = min(max(z, heights[0]), heights[-1])
        r_max = float(np.interp(z, heights, radii))
        bx, by, _ = self._base_xyz
        u, v = x - bx, y - by
        r = math.hypot(u, v)
        if r > r_max:
            x, y = bx + u * r_max / r, by + v * r_max / r
        return x, y, z

    def _workspace_world_box(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.model.workspace_low, self.model.workspace_high
        c, s = math.cos(self._base_yaw), math.sin(self._base_yaw)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = np.stack([c * corners[:, 0] - s * corners[:, 1], s * corners[:, 0] + c * corners[:, 1], corners[:, 2]], axis=1)
        world += self._base_xyz
        return world.min(axis=0), world.max(axis=0)

    # --- actuation (domain randomisation sets these per episode) -------------------------------
    @property
    def gains(self) -> tuple[list[float], list[float]]:
        """The PyBullet position and velocity gains of each arm joint's motor now."""
        return list(self._kp), list(self._kd)

    def set_gains(self, position: Sequence[float], velocity: Sequence[float]) -> None:
        """Per-joint motor gains from the next command on (reset() does not restore them: the caller does)."""
        self._kp, self._kd = [float(g) for g in position], [float(g) for g in velocity]

    def nominal_gains(self) -> tuple[list[float], list[float]]:
        return [self.config.position_gain] * self._n_arm, [self.config.velocity_gain] * self._n_arm

    def set_command_delay(self, periods: int) -> None:
        """Hold each command back `periods` control periods (a FIFO) before the motors get it; 0: none.

        The FIFO starts full of the command now in force (after reset(): home, gripper open).
        """
        self._pending = deque([(list(self._q_cmd), self.grip_command)] * periods) if periods > 0 else None

    @property
    def command_delay(self) -> int:
        return len(self._pending) if self._pending is not None else 0

    def _send(self, q: list[float], grip: float) -> None:
        cid = self.sim.cid
        grip = float(grip)
        self.grip_command = grip = -1.0 if grip < -1.0 else 1.0 if grip > 1.0 else grip
        if self._pending is not None:  # the controller's command is grip_command; the motors get an older one
            self._pending.append((q, grip))
            q, grip = self._pending.popleft()
        # targetPositions, targetVelocities (0: Bullet's default), forces, positionGains, velocityGains; positional (see refresh)
        pb.setJointMotorControlArray(self.body, self.arm_ids, pb.POSITION_CONTROL, q, self._zero_velocities, self._forces,
                                     self._kp, self._kd, cid)
        if self.suction is not None:  # > 0: vacuum on; otherwise off, releasing at once
            self.suction.command(grip > 0.0)
            return
        # grip = -1 opens fully, +1 closes fully; values between give a proportional opening.
        finger = (1.0 - grip) / 2.0 * self.model.finger_travel
        if finger == self._finger_cmd:  # Bullet motors keep their last command
            return
        self._finger_cmd = finger
        m = len(self.finger_ids)
        pb.setJointMotorControlArray(
            self.body, self.finger_ids, pb.POSITION_CONTROL, targetPositions=[finger] * m,
            forces=[self.model.finger_force] * m, physicsClientId=cid,
        )

    # --- description ----------------------------------------------------------------------------
    def describe(self) -> dict:
        """Limits and geometry for manifests and the controller-side safety layer."""
        return {
            "model": self.model.name,
            "joint_names": list(self.model.arm_joints),
            "joint_lower": self.lower.tolist(),
            "joint_upper": self.upper.tolist(),
            "joint_max_velocity": self.max_velocity.tolist(),
            "joint_max_effort": self.max_force.tolist(),
            "max_ee_speed": self.config.max_ee_speed,
            "base_position": list(self.config.base_position),
            "base_yaw": self.config.base_yaw,
            # World-frame box around the (possibly turned) base-frame workspace, for controllers' safety layers.
            "workspace_low": self._workspace_world_box()[0].tolist(),
            "workspace_high": self._workspace_world_box()[1].tolist(),
            "tool_target_max_lag": TOOL_TARGET_MAX_LAG,
            "tool_yaw_limit": TOOL_YAW_LIMIT,
            "finger_travel": self.model.finger_travel,
            "tool": "suction" if self.suction is not None else "parallel_gripper",
            **({"suction": self.suction.config.model_dump(exclude={"type"})} if self.suction is not None else {}),
            "rated_payload": self.model.rated_payload,
            "source": self.model.source,
        }


def tool_down_quat(yaw: float) -> list[float]:
    """Tool pointing straight down (rotation pi about x), then turned by `yaw` about world z.

    The product Rz(yaw) * Rx(pi) as a quaternion (x, y, z, w), in closed form.
    """
    return [math.cos(yaw / 2.0), math.sin(yaw / 2.0), 0.0, 0.0]


def tool_yaw(quat) -> float:
    """Yaw of the tool's x axis in the world xy plane."""
    x, y, z, w = quat
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + z * w)
    return math.atan2(r10, r00)
