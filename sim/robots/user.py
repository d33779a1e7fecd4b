"""A robot the scenario names by URDF (`robot.urdf`): any arm, with genba's parallel gripper or suction cup.

The arm's URDF is checked by scenarios/urdf.py; here it is turned into one generated URDF that
PyBullet loads as a single body: the user's links and joints as they are (mesh paths made
absolute, speed and effort limits overridden where the scenario says, movable joints that are not
arm joints frozen, continuous joints given a +-2 pi range), plus the GP7's parallel gripper or, with
robot.tool {type: suction}, its vacuum cup (sim/assets/gp7/make_gp7_urdf.py) fixed to the flange link.
The result is a `RobotModel` like the built-in ones, so the env, tasks, experts, bridge and manifests use
it unchanged. IK is the closed tool-down form where the arm's layout allows it (sim/robots/planar_fit.py:
6 joints, planar at zero, like the GP7 and the xArm6), else the numerical fallback on a kinematic copy
(sim/robots/ik.py).
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pybullet as pb

from scenarios.schema import RobotConfig, ToolConfig
from scenarios.urdf import CONTINUOUS_RANGE, ArmChain, UrdfError, mesh_path
from sim.asset_cache import cached_text
from sim.assets.gp7 import make_gp7_urdf as gp7
from sim.errors import SimError
from sim.robots.base import Robot, RobotModel, tool_down_quat
from sim.robots.ik import KinematicCopy
from sim.robots.low_detail import collision_visual_urdf
from sim.robots.planar_fit import fit_tool_down_ik

GENERATOR_VERSION = 1  # bump when the generated URDF changes for the same input
PREFIX = "genba_"  # the generated tool's links and joints; a user URDF must not use these names
TOOL_LINK = f"{PREFIX}tcp"
CUP_LINK = f"{PREFIX}cup"
FINGER_JOINTS = (f"{PREFIX}finger_joint1", f"{PREFIX}finger_joint2")
FINGER_LIMITS = (200.0, 0.1)  # N, m/s: the jaw joints' own limits (the grip force is finger_force)
# The default home: the tool pointing down ahead of and above the base (m, base frame): the GP7's
# (0.4 m ahead), else farther out for an arm that folds too little to reach it with margin.
HOME_TOOL_POSITIONS = ((0.4, 0.0, 0.25), (0.5, 0.0, 0.25), (0.6, 0.0, 0.25), (0.3, 0.0, 0.25))
HOME_TOLERANCE = (1e-3, 0.01)  # m, rad: how close the solved home must put the tool
HOME_LIMIT_MARGIN = 0.1  # rad (m) every arm joint stays from its limits at home
HOME_SAMPLES = 1000  # random poses scored for nearness to each home target
HOME_SEEDS = 16  # of which the nearest are solved from
# The tool-down reach table (RobotModel.tool_down_reach): heights (m, base frame), step, tolerance, bound.
REACH_HEIGHTS = tuple(round(0.05 * i, 2) for i in range(-2, 15))
REACH_STEP, REACH_TOLERANCE, REACH_MAX = 0.02, 0.003, 3.0
DEFAULT_WORKSPACE_X_MIN = 0.15  # m ahead of the base, as the built-in arms' boxes


def gripper_xml(flange: str, mount_xyz, mount_rpy, travel: float) -> list[str]:
    """The GP7's gripper (links, then joints), renamed, hanging from `flange` at the mount pose."""
    mass, shapes = gp7.LINKS["gp7_gripper"]
    limit = (0.0, travel, *FINGER_LIMITS)
    return [
        gp7.link_xml(f"{PREFIX}gripper", mass, shapes),
        gp7.link_xml(f"{PREFIX}finger1", gp7.FINGER_MASS, gp7.finger_shapes(+1), gp7.PAD_CONTACT),
        gp7.link_xml(f"{PREFIX}finger2", gp7.FINGER_MASS, gp7.finger_shapes(-1), gp7.PAD_CONTACT),
        gp7.frame_link(TOOL_LINK),
        gp7.joint_xml(f"{PREFIX}gripper_mount", "fixed", flange, f"{PREFIX}gripper", mount_xyz, mount_rpy),
        gp7.joint_xml(FINGER_JOINTS[0], "prismatic", f"{PREFIX}gripper", f"{PREFIX}finger1", (0, 0, gp7.FINGER_Z), axis=(0, 1, 0), limit=limit),
        gp7.joint_xml(FINGER_JOINTS[1], "prismatic", f"{PREFIX}gripper", f"{PREFIX}finger2", (0, 0, gp7.FINGER_Z), axis=(0, -1, 0), limit=limit),
        gp7.joint_xml(f"{PREFIX}tcp_joint", "fixed", f"{PREFIX}gripper", TOOL_LINK, (0, 0, gp7.TCP_Z)),
    ]


def suction_xml(flange: str, mount_xyz, mount_rpy, cup_radius: float) -> list[str]:
    """The GP7's suction tool (links, then joints), renamed, hanging from `flange` at the mount pose."""
    return [
        gp7.link_xml(f"{PREFIX}suction", gp7.SUCTION_BODY_MASS, gp7.SUCTION_BODY),
        gp7.link_xml(CUP_LINK, gp7.CUP_MASS, gp7.cup_shapes(cup_radius), gp7.CUP_CONTACT),
        gp7.frame_link(TOOL_LINK),
        gp7.joint_xml(f"{PREFIX}suction_mount", "fixed", flange, f"{PREFIX}suction", mount_xyz, mount_rpy),
        gp7.joint_xml(f"{PREFIX}cup_joint", "fixed", f"{PREFIX}suction", CUP_LINK, (0, 0, gp7.TCP_Z)),
        gp7.joint_xml(f"{PREFIX}tcp_joint", "fixed", CUP_LINK, TOOL_LINK, (0, 0, 0)),
    ]


def _per_joint(value, n: int) -> list[float] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, tuple) else [float(value)] * n


def user_urdf_text(config: RobotConfig, chain: ArmChain, turn: float = 0.0) -> str:
    """The generated URDF: the user's arm, adjusted as the module docstring says, with the tool on its flange
    (at tool.mount_xyz / mount_rpy, then turned by `turn` rad about its own z)."""
    source = chain.tree.path
    root = ET.fromstring(source.read_bytes())
    taken = [e.get("name") for tag in ("link", "joint") for e in root.findall(tag) if (e.get("name") or "").startswith(PREFIX)]
    if taken:
        raise UrdfError(f"robot.urdf: {source}: {taken[0]!r}: names starting {PREFIX!r} are reserved for the tool genba mounts")
    for element in list(root.iter("mesh")) + list(root.iter("texture")):
        if element.get("filename"):
            element.set("filename", str(mesh_path(element.get("filename"), source).resolve()))
    arm = [j.name for j in chain.arm_joints]
    speed = _per_joint(config.max_joint_speed, len(arm))
    effort = _per_joint(config.max_joint_effort, len(arm))
    for joint in root.findall("joint"):
        name = joint.get("name")
        if name in chain.frozen:
            joint.set("type", "fixed")
            for tag in ("mimic", "limit", "axis", "dynamics", "calibration", "safety_controller"):
                for child in joint.findall(tag):
                    joint.remove(child)
        if name not in arm:
            continue
        i = arm.index(name)
        limit = joint.find("limit")
        if limit is None:
            limit = ET.SubElement(joint, "limit")
        if joint.get("type") == "continuous":
            joint.set("type", "revolute")
            limit.set("lower", f"{-CONTINUOUS_RANGE:.9g}")
            limit.set("upper", f"{CONTINUOUS_RANGE:.9g}")
        if speed is not None:
            limit.set("velocity", f"{speed[i]:.9g}")
        if effort is not None:
            limit.set("effort", f"{effort[i]:.9g}")
    colours = {m.get("name") for m in root.findall("material")}
    for name in (gp7.DARK, gp7.PAD):
        if name not in colours:
            ET.SubElement(root, "material", name=name).append(ET.Element("color", rgba=gp7.f(gp7.COLOURS[name])))
    tool = config.tool or ToolConfig()
    rpy = tool.mount_rpy or (0.0, 0.0, 0.0)
    if turn:
        mount = np.array(pb.getMatrixFromQuaternion(pb.getQuaternionFromEuler(rpy))).reshape(3, 3)
        c, s = math.cos(turn), math.sin(turn)
        turned = mount @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        rpy = pb.getEulerFromQuaternion(_quat(turned))
    if config.suction is not None:
        fragment = suction_xml(chain.flange_link, tool.mount_xyz, rpy, config.suction.cup_radius)
    else:
        fragment = gripper_xml(chain.flange_link, tool.mount_xyz, rpy, tool.finger_travel)
    for element in ET.fromstring("<robot>" + "\n".join(fragment) + "</robot>"):
        root.append(element)
    ET.indent(root)
    return f"<?xml version=\"1.0\" ?>\n<!-- generated by sim/robots/user.py from {source} -->\n" + ET.tostring(root, encoding="unicode") + "\n"


def _quat(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method: stable for every angle)."""
    t = np.trace(rot)
    if t > 0:
        w = math.sqrt(1.0 + t) * 2
        return ((rot[2, 1] - rot[1, 2]) / w, (rot[0, 2] - rot[2, 0]) / w, (rot[1, 0] - rot[0, 1]) / w, w / 4)
    i = int(np.argmax(np.diag(rot)))
    j, k = (i + 1) % 3, (i + 2) % 3
    r = math.sqrt(1.0 + rot[i, i] - rot[j, j] - rot[k, k]) * 2
    q = [0.0, 0.0, 0.0, 0.0]
    q[i], q[j], q[k], q[3] = r / 4, (rot[j, i] + rot[i, j]) / r, (rot[k, i] + rot[i, k]) / r, (rot[k, j] - rot[j, k]) / r
    return tuple(q)


def write_cached(text: str, stem: str) -> Path:
    """The text on disk in the asset cache, named by its hash (written atomically: parallel envs may race)."""
    return cached_text(text, f"{stem}-genba", version=GENERATOR_VERSION)


class ToolDownSolver:
    """Damped least squares on a kinematic copy of the generated URDF: arm angles that put the tool point
    at a position with the tool's z straight down (jaws along x, or any yaw with `free_yaw`), pulled in
    the arm's null space toward the middle of each joint's range (zero for joints that turn a full circle).
    PyBullet's own IK is not used here: from afar it converges to twisted solutions of a redundant arm."""

    def __init__(self, urdf: Path, n_arm: int, free_yaw: bool = False):
        self.copy = KinematicCopy(urdf, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), [], -1)
        cid, body = self.copy.cid, self.copy.body
        self.n, self.free_yaw = n_arm, free_yaw
        n = pb.getNumJoints(body, physicsClientId=cid)
        self.movable = [j for j in range(n) if pb.getJointInfo(body, j, physicsClientId=cid)[2] != pb.JOINT_FIXED]
        infos = [pb.getJointInfo(body, j, physicsClientId=cid) for j in self.movable[:n_arm]]
        self.tool = [pb.getJointInfo(body, j, physicsClientId=cid)[12].decode() for j in range(n)].index(TOOL_LINK)
        self.lower, self.upper = np.array([i[8] for i in infos]), np.array([i[9] for i in infos])
        self.span = np.maximum(self.upper - self.lower, 1e-6)
        self.rest = np.where(self.span >= 2 * math.pi - 1e-6, np.clip(0.0, self.lower, self.upper), (self.lower + self.upper) / 2)
        self.want = np.array(pb.getMatrixFromQuaternion(tool_down_quat(0.0))).reshape(3, 3)
        self.fingers = [0.0] * (len(self.movable) - n_arm)

    def close(self) -> None:
        self.copy.close()

    def pose(self, q) -> tuple[np.ndarray, np.ndarray]:
        cid, body = self.copy.cid, self.copy.body
        pb.resetJointStatesMultiDof(body, self.movable, [[float(v)] for v in list(q) + self.fingers], physicsClientId=cid)
        state = pb.getLinkState(body, self.tool, computeForwardKinematics=1, physicsClientId=cid)
        return np.array(state[4]), np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3)

    def tilt(self, rot: np.ndarray) -> float:
        """rad from the wanted orientation (the tool's z from straight down, with free_yaw)."""
        cos = -rot[2, 2] if self.free_yaw else (np.trace(self.want.T @ rot) - 1) / 2
        return math.acos(max(-1.0, min(1.0, cos)))

    def solve(self, q, target, orient: bool = True, iterations: int = 300):
        """(q, position error m, tilt rad, tool yaw rad) after DLS from q; orient=False places the point alone."""
        q = np.array(q, dtype=float)
        for _ in range(iterations):
            pos, rot = self.pose(q)
            # Orientation error as a rotation vector (world frame), small-angle form of want * rot^T.
            r = self.want @ rot.T
            err = np.concatenate([target - pos, 0.5 * np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])])
            lin, ang = pb.calculateJacobian(self.copy.body, self.tool, [0.0, 0.0, 0.0], list(q) + self.fingers,
                                            [0.0] * len(self.movable), [0.0] * len(self.movable), physicsClientId=self.copy.cid)
            jac = np.vstack([np.array(lin)[:, :self.n], np.array(ang)[:, :self.n]])
            if not orient:  # the tool point alone
                err, jac = err[:3], jac[:3]
            elif self.free_yaw:  # only the tool's z must point down: no row for the turn about world z
                err = np.concatenate([target - pos, np.cross(rot[:, 2], self.want[:, 2])[:2]])
                jac = jac[:5]
            pinv = jac.T @ np.linalg.inv(jac @ jac.T + 1e-4 * np.eye(len(jac)))
            pull = (np.eye(self.n) - pinv @ jac) @ (-0.1 * (q - self.rest))
            step = np.clip(pinv @ err + pull, -0.2, 0.2)
            q = np.clip(q + step, self.lower, self.upper)
            if np.linalg.norm(step) < 1e-6:
                break
        pos, rot = self.pose(q)
        return q, float(np.linalg.norm(pos - target)), self.tilt(rot), math.atan2(rot[1, 0], rot[0, 0])


def solve_home(urdf: Path, n_arm: int, free_yaw: bool, targets=HOME_TOOL_POSITIONS,
               source: Path | None = None) -> tuple[tuple[float, ...], float]:
    """(arm angles, tool yaw) placing the tool straight down at the first of `targets` (base frame)
    the arm reaches with every joint clear of its limits: jaws along x, or with `free_yaw` at
    whatever yaw suits the arm best (the caller then turns the tool on the flange to face x).
    The converged solution nearest mid-range wins: for the usual arms elbow up, wrist unturned.
    """
    solver = ToolDownSolver(urdf, n_arm, free_yaw)
    try:
        rest, lower, upper, span = solver.rest, solver.lower, solver.upper, solver.span
        rng = np.random.default_rng(0)
        low, high = np.maximum(lower, rest - math.pi), np.minimum(upper, rest + math.pi)
        samples = rng.uniform(low, high, size=(HOME_SAMPLES, n_arm))
        poses = [solver.pose(q) for q in samples]
        for target in targets:
            target = np.asarray(target, dtype=float)
            best, best_cost = None, math.inf
            # Seeds: mid-range bent toward the goal by the tool point alone (for the usual arms the natural
            # pose, which the orientation then only finishes), mid-range itself, and the sampled poses
            # nearest the goal and mid-range (a redundant arm has several families of solutions).
            score = [float(np.linalg.norm(p - target)) + 0.2 * solver.tilt(rot) + 0.5 * float(np.sum(((q - rest) / span) ** 2))
                     for q, (p, rot) in zip(samples, poses)]
            starts = [solver.solve(rest, target, orient=False, iterations=100)[0], rest] + [samples[i] for i in np.argsort(score)[:HOME_SEEDS]]
            for seed in starts:
                q, err, angle, yaw = solver.solve(seed, target)
                margin = np.min(np.minimum(q - lower, upper - q))
                if err > HOME_TOLERANCE[0] or angle > HOME_TOLERANCE[1] or margin < HOME_LIMIT_MARGIN:
                    continue
                cost = float(np.sum(((q - rest) / span) ** 2))
                if cost < best_cost:
                    best, best_cost = (q, yaw), cost
            if best is not None:
                return tuple(float(v) for v in best[0]), (best[1] if free_yaw else 0.0)
        raise UrdfError(f"robot.home: no joint angles put the tool straight down at any of {[list(t) for t in targets]} m "
                        f"(base frame) with the joints {HOME_LIMIT_MARGIN} rad clear of their limits, for {source or urdf}; "
                        "give robot.home (rad per arm joint)")
    finally:
        solver.close()


def tool_down_reach(solver: ToolDownSolver, home: tuple[float, ...], heights=REACH_HEIGHTS) -> tuple[tuple[float, float], ...]:
    """((z, r) ...): how far from the base's vertical axis (m) the tool point gets, pointing down, at each
    height z (m, base frame); heights the arm cannot reach from its home pose are left out.

    solver: the arm's ToolDownSolver, with free_yaw. Marched outward along the home's direction from the
    home pose, each solve starting where the last ended, until the tool is more than REACH_TOLERANCE off
    or a joint is at its limit.
    """
    start, _ = solver.pose(home)
    heading = math.atan2(start[1], start[0])
    direction = np.array([math.cos(heading), math.sin(heading), 0.0])
    r0 = float(np.hypot(start[0], start[1]))
    table = []
    for z in heights:
        q = np.array(home, dtype=float)
        ok = False
        for frac in np.linspace(0.0, 1.0, 6)[1:]:  # from the home height to z in steps
            q, err, tilt, _ = solver.solve(q, r0 * direction + [0.0, 0.0, start[2] + frac * (z - start[2])], iterations=60)
            ok = err < REACH_TOLERANCE and tilt < 0.05
        if not ok:
            continue
        r = r0
        while r < REACH_MAX:
            q_next, err, tilt, _ = solver.solve(q, (r + REACH_STEP) * direction + [0.0, 0.0, z], iterations=60)
            if err > REACH_TOLERANCE or tilt > 0.05:
                break
            q, r = q_next, r + REACH_STEP
        table.append((float(z), float(r)))
    return tuple(table)


def arm_reach(urdf: Path) -> tuple[float, float]:
    """(height of the first arm joint, sum of the distances from it along the chain to the tool point) in m,
    at the zero pose: an upper bound of how far the tool gets from the first joint."""
    copy = KinematicCopy(urdf, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), [], -1)
    try:
        cid, body = copy.cid, copy.body
        n = pb.getNumJoints(body, physicsClientId=cid)
        names = [pb.getJointInfo(body, j, physicsClientId=cid)[12].decode() for j in range(n)]
        first = next(j for j in range(n) if pb.getJointInfo(body, j, physicsClientId=cid)[2] != pb.JOINT_FIXED)
        chain, j = [], names.index(TOOL_LINK)
        while j >= first:
            chain.append(np.array(pb.getLinkState(body, j, computeForwardKinematics=1, physicsClientId=cid)[4]))
            j = pb.getJointInfo(body, j, physicsClientId=cid)[16]
        chain.reverse()
        return float(chain[0][2]), float(sum(np.linalg.norm(b - a) for a, b in zip(chain, chain[1:])))
    finally:
        copy.close()


# RobotConfig keys the RobotModel does not depend on: configs that differ only in these share one model.
NOT_MODEL_KEYS = ("base_position", "base_yaw", "control", "max_ee_speed", "max_yaw_rate", "max_joint_speed_fraction",
                  "position_gain", "velocity_gain")


def user_robot_model(config: RobotConfig) -> RobotModel:
    """The RobotModel of a scenario's URDF robot (the arm, its limits, the tool, home and workspace), built
    once per process for each arm (solving home and reach takes about a second)."""
    return _user_robot_model(config.model_copy(update={k: RobotConfig.model_fields[k].default for k in NOT_MODEL_KEYS}))


@functools.lru_cache(maxsize=16)
def _user_robot_model(config: RobotConfig) -> RobotModel:
    chain = config.arm_chain()
    tool = config.tool or ToolConfig()
    auto_turn = tool.mount_rpy is None and config.home is None
    urdf = write_cached(user_urdf_text(config, chain), chain.tree.path.stem)
    n = len(chain.arm_joints)
    home = config.home
    if home is None:
        try:  # named by the user's file, not genba's generated copy; as a SimError (one line), not a traceback
            home, yaw = solve_home(urdf, n, free_yaw=auto_turn, source=chain.tree.path)
        except UrdfError as exc:
            raise SimError(str(exc)) from None
        if abs(yaw) > 1e-6:
            # The tool point lies on the tool's z axis: turning the tool about it on the flange keeps the
            # home angles and makes the jaws face the base's x there (tool yaw 0, the middle of its range).
            urdf = write_cached(user_urdf_text(config, chain, turn=yaw), chain.tree.path.stem)
    solver = ToolDownSolver(urdf, n, free_yaw=True)  # one kinematic copy for the reach table and the closed-form fit
    try:
        reach_table = tool_down_reach(solver, tuple(home))
        closed_form, why_not = fit_tool_down_ik(solver, tuple(home), reach_table)
    finally:
        solver.close()
    if config.workspace_low is not None:
        low, high = config.workspace_low, config.workspace_high
    else:
        shoulder, reach = arm_reach(urdf)
        low, high = (DEFAULT_WORKSPACE_X_MIN, -reach, 0.0), (reach, reach, shoulder + reach)
    overridden = [what for what, v in (("speeds", config.max_joint_speed), ("efforts", config.max_joint_effort)) if v is not None]
    cup = config.suction
    if cup is not None:
        tool_source = f"the GP7's suction tool (0.38 kg, a {2000 * cup.cup_radius:.0f} mm cup {gp7.TCP_Z * 1000:.0f} mm from the flange)"
    else:
        tool_source = f"genba's generic parallel gripper (the GP7's, {gp7.FINGER_TRAVEL * 1000:.0f} mm jaws, estimate)"
    return RobotModel(
        name=config.robot_name,
        urdf_path=urdf,
        arm_joints=tuple(j.name for j in chain.arm_joints),
        finger_joints=FINGER_JOINTS if cup is None else (),
        tool_link=TOOL_LINK,
        home=tuple(home),
        finger_travel=tool.finger_travel if cup is None else 0.0,
        finger_force=tool.finger_force if cup is None else 0.0,
        suction_link=CUP_LINK if cup is not None else None,
        workspace_low=tuple(low),
        workspace_high=tuple(high),
        rated_payload=config.rated_payload,  # None: unknown
        source=(f"user URDF {chain.tree.path} (<robot name={chain.name!r}>), base {chain.base_link}, flange {chain.flange_link}; "
                f"joint limits from the URDF{' (scenario overrides: ' + ', '.join(overridden) + ')' if overridden else ''}; "
                f"tool: {tool_source}; IK: "
                + ("closed form (tool-down plane fitted to the URDF)" if closed_form else f"numerical (no closed form: {why_not})")),
        low_detail_urdf=functools.partial(collision_visual_urdf, urdf, {}),
        tool_down_reach=reach_table,
        tool_down_ik=closed_form,
    )


class UserRobot(Robot):
    """A robot given by URDF in the scenario (robot.urdf)."""

    def __init__(self, sim, config: RobotConfig, name: str = "robot"):
        super().__init__(sim, user_robot_model(config), config, name)
