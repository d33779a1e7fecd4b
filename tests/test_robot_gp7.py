"""The GP7-class arm against its datasheet, and both arms' tool tracking and grasping in real PyBullet.

Datasheet figures are restated here on purpose (not imported from the generator), so a typo in
sim/assets/gp7/make_gp7_urdf.py fails a test. Source: Yaskawa Motoman GP7 datasheet (see gp7.urdf).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pybullet as pb
import pytest

from scenarios.schema import PhysicsConfig, RobotConfig
from sim.robots.base import Robot, tool_yaw
from sim.robots.gp7 import GP7, GP7_MODEL
from sim.robots.panda import PANDA, Panda
from sim.simulator import Simulator

DATASHEET_RANGE_DEG = {  # S, L, U, R, B, T
    "joint_1_s": (-170, 170), "joint_2_l": (-65, 145), "joint_3_u": (-70, 190),
    "joint_4_r": (-190, 190), "joint_5_b": (-135, 135), "joint_6_t": (-360, 360),
}
DATASHEET_SPEED_DEG_S = {"joint_1_s": 375, "joint_2_l": 315, "joint_3_u": 410, "joint_4_r": 550, "joint_5_b": 550, "joint_6_t": 1000}
DATASHEET_MASS_KG = 34.0
DATASHEET_H_REACH_M = 0.927  # to the P-point (B-axis centre)
DATASHEET_V_REACH_M = 1.693  # vertical stroke of the P-point
ARM_LINKS = ("base_link", "link_1_s", "link_2_l", "link_3_u", "link_4_r", "link_5_b", "link_6_t")

ROBOTS = {
    "gp7": GP7, "panda": Panda,
    # The Panda without its closed-form IK: PyBullet's iterative IK, the path for models without one.
    "panda-iterative": lambda sim, config: Robot(sim, dataclasses.replace(PANDA, tool_down_ik=None), config),
}


@pytest.fixture
def make():
    sims = []

    def _make(model: str, **config):
        sim = Simulator(PhysicsConfig())
        sims.append(sim)
        robot = ROBOTS[model](sim, RobotConfig(model=model.split("-")[0], **config))
        robot.reset()
        return sim, robot

    yield _make
    for sim in sims:
        sim.close()


def link_index(robot, name: str) -> int:
    for j in range(pb.getNumJoints(robot.body, physicsClientId=robot.sim.cid)):
        if pb.getJointInfo(robot.body, j, physicsClientId=robot.sim.cid)[12].decode() == name:
            return j
    raise KeyError(name)


def tool_tilt_deg(robot) -> float:
    """Angle between the tool's approach axis (its z) and straight down."""
    s = pb.getLinkState(robot.body, robot.tool_id, computeForwardKinematics=1, physicsClientId=robot.sim.cid)
    z_axis = np.asarray(pb.getMatrixFromQuaternion(s[5])).reshape(3, 3)[:, 2]
    return math.degrees(math.acos(np.clip(-z_axis[2], -1.0, 1.0)))


# --- the model file -----------------------------------------------------------------------------------
def test_urdf_is_what_the_generator_writes():
    path = GP7_MODEL.urdf_path.with_name("make_gp7_urdf.py")
    spec = importlib.util.spec_from_file_location("make_gp7_urdf", path)
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(gen)
    finally:
        del sys.modules[spec.name]
    assert GP7_MODEL.urdf_path.read_text() == gen.build(), "gp7.urdf is stale: rerun make_gp7_urdf.py"


def test_every_link_has_a_physical_inertial_that_pybullet_uses(make):
    sim, robot = make("gp7")
    links = ET.parse(GP7_MODEL.urdf_path).getroot().findall("link")
    masses = {}
    for link in links:
        name = link.get("name")
        inertial = link.find("inertial")
        assert inertial is not None, f"{name} has no <inertial>: PyBullet would give it 1 kg"
        mass = float(inertial.find("mass").get("value"))
        i = {k: float(v) for k, v in inertial.find("inertia").attrib.items()}
        tensor = np.array([[i["ixx"], i["ixy"], i["ixz"]], [i["ixy"], i["iyy"], i["iyz"]], [i["ixz"], i["iyz"], i["izz"]]])
        principal = np.linalg.eigvalsh(tensor)
        assert mass > 0 and principal.min() > 0, name
        # A rigid body's principal moments obey the triangle inequality.
        assert principal[0] + principal[1] >= principal[2] * (1 - 1e-9), name
        masses[name] = mass
        if name != "base_link":  # a fixed base reports mass 0
            dyn = pb.getDynamicsInfo(robot.body, link_index(robot, name), physicsClientId=sim.cid)
            assert dyn[0] == pytest.approx(mass), name
            assert sorted(dyn[2]) == pytest.approx(sorted(principal), rel=1e-4), name
    arm = sum(masses[n] for n in ARM_LINKS)
    assert arm == pytest.approx(DATASHEET_MASS_KG, rel=0.10)
    gripper = sum(m for n, m in masses.items() if n not in ARM_LINKS)
    assert 0.3 < gripper < 0.5 * GP7_MODEL.rated_payload  # tooling leaves most of the 7 kg for the part


def test_joint_limits_and_speeds_are_the_datasheet_numbers(make):
    sim, robot = make("gp7")
    assert GP7_MODEL.arm_joints == tuple(DATASHEET_RANGE_DEG)
    lower = [math.radians(DATASHEET_RANGE_DEG[j][0]) for j in GP7_MODEL.arm_joints]
    upper = [math.radians(DATASHEET_RANGE_DEG[j][1]) for j in GP7_MODEL.arm_joints]
    speed = [math.radians(DATASHEET_SPEED_DEG_S[j]) for j in GP7_MODEL.arm_joints]
    assert robot.lower == pytest.approx(lower, abs=1e-7)
    assert robot.upper == pytest.approx(upper, abs=1e-7)
    assert robot.max_velocity == pytest.approx(speed, abs=1e-7)
    assert np.all(robot.max_force > 0)
    assert GP7_MODEL.rated_payload == 7.0


def test_reach_matches_the_datasheet(make):
    """Sweep L and U over their full ranges (S = R = T = 0) and measure the P-point, as Yaskawa does."""
    sim, robot = make("gp7")
    cid, body = sim.cid, robot.body
    p_link, flange = link_index(robot, "link_5_b"), link_index(robot, "link_6_t")
    l_id, u_id, b_id = robot.arm_ids[1], robot.arm_ids[2], robot.arm_ids[4]

    def p_point(l_deg: float, u_deg: float, link: int = p_link) -> np.ndarray:
        pb.resetJointState(body, l_id, math.radians(l_deg), physicsClientId=cid)
        pb.resetJointState(body, u_id, math.radians(u_deg), physicsClientId=cid)
        return np.asarray(pb.getLinkState(body, link, computeForwardKinematics=1, physicsClientId=cid)[4])

    pb.resetJointState(body, b_id, 0.0, physicsClientId=cid)  # wrist straight
    (l_lo, l_hi), (u_lo, u_hi) = DATASHEET_RANGE_DEG["joint_2_l"], DATASHEET_RANGE_DEG["joint_3_u"]
    grid = [(l, u, p_point(l, u)) for l in range(l_lo, l_hi + 1, 5) for u in range(u_lo, u_hi + 1, 5)]
    # Refine around the coarse optimum at 0.5 deg.
    def refine(l0, u0, key):
        pts = [(l, u, p_point(l, u)) for l in np.arange(l0 - 5, l0 + 5.1, 0.5) for u in np.arange(u0 - 5, u0 + 5.1, 0.5)
               if l_lo <= l <= l_hi and u_lo <= u <= u_hi]
        return max(pts, key=key)

    l, u, far = refine(*max(grid, key=lambda g: g[2][0])[:2], key=lambda g: g[2][0])
    top = refine(*max(grid, key=lambda g: g[2][2])[:2], key=lambda g: g[2][2])[2][2]
    bottom = refine(*min(grid, key=lambda g: g[2][2])[:2], key=lambda g: -g[2][2])[2][2]
    assert far[0] == pytest.approx(DATASHEET_H_REACH_M, abs=0.005)
    assert top - bottom == pytest.approx(DATASHEET_V_REACH_M, abs=0.01)
    # The flange sits 80 mm beyond the P-point along the straight wrist.
    assert np.linalg.norm(p_point(l, u, flange) - far) == pytest.approx(0.080, abs=1e-6)


# --- at home -----------------------------------------------------------------------------------------
def test_home_is_tool_down_in_front_without_self_contact(make):
    sim, robot = make("gp7")
    for _ in range(10):
        sim.step()
    pos, yaw = robot.tool_pose()
    assert pos == pytest.approx([0.40, 0.0, 0.25], abs=0.002)
    assert tool_tilt_deg(robot) < 0.5 and abs(yaw) < 0.01
    pb.performCollisionDetection(physicsClientId=sim.cid)
    assert pb.getContactPoints(robot.body, robot.body, physicsClientId=sim.cid) == ()


@pytest.mark.parametrize("model", ["gp7", "panda"])
def test_the_step_reading_equals_freshly_computed_kinematics(make, model):
    """The reading refresh() takes once per step equals freshly computed kinematics, after steps and resets
    (Bullet's own link frames after a step are a substep old: a reading without forward kinematics fails this)."""
    sim, robot = make(model)
    rng = np.random.default_rng(3)
    state = sim.save_state()
    for episode in range(3):
        for _ in range(15):
            robot.command_tool_delta(rng.uniform(-0.02, 0.02, 3), rng.uniform(-0.1, 0.1), rng.uniform(-1, 1))
            sim.step()
            robot.refresh()
            fresh = pb.getLinkState(robot.body, robot.tool_id, computeLinkVelocity=1, computeForwardKinematics=1,
                                    physicsClientId=sim.cid)
            assert robot.reading.tool_pos == fresh[4] and robot.reading.tool_vel == fresh[6]
            assert robot.reading.tool_yaw == tool_yaw(fresh[5])
        sim.restore_state(state)
        robot.reset(joint_noise=0.3, rng=rng)  # resetJointState to new angles
        fresh = pb.getLinkState(robot.body, robot.tool_id, computeLinkVelocity=1, computeForwardKinematics=1, physicsClientId=sim.cid)
        assert robot.reading.tool_pos == fresh[4]


def test_gripper_opens_to_the_commanded_width(make):
    sim, robot = make("gp7")
    q = robot.home
    for grip in (-1.0, 0.0, 0.5, -0.5):
        for _ in range(20):
            robot.command_joint_positions(q, grip)
            sim.step()
        assert robot.gripper_opening() == pytest.approx((1 - grip) * GP7_MODEL.finger_travel, abs=0.001), grip
    for _ in range(20):
        robot.command_joint_positions(q, 1.0)
        sim.step()
    # Fully closed, the pads meet: this contact also proves self-collision is switched on, so the
    # empty contact list at home above means something.
    assert robot.gripper_opening() < 0.001
    pb.performCollisionDetection(physicsClientId=sim.cid)
    pads = {link_index(robot, "gp7_finger1"), link_index(robot, "gp7_finger2")}
    contacts = pb.getContactPoints(robot.body, robot.body, physicsClientId=sim.cid)
    assert any({c[3], c[4]} == pads for c in contacts)


# --- closed-form IK ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model, base_yaw", [(m, y) for m in ("gp7", "panda") for y in (0.0, 0.7)])
def test_closed_form_ik_puts_the_tool_exactly_on_target_pointing_down(make, model, base_yaw):
    """Joint angles from the closed form, set directly (no physics): PyBullet's forward kinematics
    of the URDF must put the tool on the target, pointing straight down, at the asked yaw."""
    sim, robot = make(model, base_position=(0.1, -0.2, 0.05), base_yaw=base_yaw)
    rng = np.random.default_rng(0)
    c, s = math.cos(base_yaw), math.sin(base_yaw)
    for _ in range(100):
        x, y, z = rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.4)  # base frame
        goal = np.array([0.1 + c * x - s * y, -0.2 + s * x + c * y, 0.05 + z])
        yaw = rng.uniform(-1.5, 1.5)
        for joint, angle in zip(robot.arm_ids, robot.inverse_kinematics(goal, yaw)):
            pb.resetJointState(robot.body, joint, angle, physicsClientId=sim.cid)
        pos, orn = pb.getLinkState(robot.body, robot.tool_id, computeForwardKinematics=1, physicsClientId=sim.cid)[4:6]
        assert np.linalg.norm(np.array(pos) - goal) < 1e-5
        assert tool_tilt_deg(robot) < 0.01
        assert abs(math.remainder(tool_yaw(orn) - yaw, 2 * math.pi)) < 1e-5


# --- tracking ----------------------------------------------------------------------------------------
# (x, y, z, yaw) in the base frame: a conveyor at x 0.5, 0.3 m to both sides, bins beside the base.
TARGETS = [
    (0.50, 0.00, 0.06, 0.0), (0.50, 0.00, 0.30, math.pi / 2), (0.50, 0.30, 0.10, -math.pi / 2),
    (0.50, -0.30, 0.10, 0.7), (0.15, 0.45, 0.10, -0.4), (0.15, -0.45, 0.10, 0.4),
    (0.70, 0.00, 0.20, -1.0), (0.35, 0.00, 0.50, 0.3),
]
# Beyond the Panda: its 0.855 m reach, or at the bins a yaw that drives its joint 6 into its limit.
GP7_ONLY_TARGETS = [
    (0.80, 0.20, 0.10, 0.0), (0.30, -0.60, 0.15, -math.pi / 2),
    (0.15, 0.45, 0.10, -math.pi / 2), (0.15, -0.45, 0.10, math.pi / 2),
]


@pytest.mark.parametrize("model, target", [("gp7", t) for t in TARGETS + GP7_ONLY_TARGETS] + [(m, t) for m in ("panda", "panda-iterative") for t in TARGETS])
def test_tool_reaches_targets_pointing_down(make, model, target):
    sim, robot = make(model)
    goal, yaw = np.array(target[:3]), target[3]
    for _ in range(80):  # 4 s
        robot.command_tool_pose(goal, yaw, -1.0)
        sim.step()
    pos, tool_yaw = robot.tool_pose()
    assert np.linalg.norm(pos - goal) < 0.005
    assert tool_tilt_deg(robot) < 2.0
    assert abs(math.remainder(tool_yaw - yaw, 2 * math.pi)) < math.radians(2.0)


def test_joint_torques_hold_the_rated_payload_at_reach(make):
    """The estimated torque limits carry 7 kg (gripper included) at 0.82 m without sagging."""
    sim, robot = make("gp7")
    gripper = link_index(robot, "gp7_gripper")
    tooling = sum(pb.getDynamicsInfo(robot.body, link_index(robot, n), physicsClientId=sim.cid)[0] for n in ("gp7_gripper", "gp7_finger1", "gp7_finger2"))
    part = GP7_MODEL.rated_payload - tooling
    body_mass = pb.getDynamicsInfo(robot.body, gripper, physicsClientId=sim.cid)[0]
    pb.changeDynamics(robot.body, gripper, mass=body_mass + part, physicsClientId=sim.cid)  # a part rigidly held
    goal = np.array([0.80, 0.20, 0.10])
    for _ in range(80):
        robot.command_tool_pose(goal, 0.0, 1.0)
        sim.step()
    assert np.linalg.norm(robot.tool_pose()[0] - goal) < 0.005
    torques = np.array([s[3] for s in pb.getJointStates(robot.body, robot.arm_ids, physicsClientId=sim.cid)])
    assert np.all(np.abs(torques) < 0.9 * robot.max_force)  # held with margin, not at the limit


# --- grasping ----------------------------------------------------------------------------------------
def drive(sim, robot, goal, yaw, grip, steps, speed=0.2):
    """Move the tool target in a straight line at `speed` m/s, then hold it, for `steps` control periods."""
    max_step = speed * sim.physics.control_period
    for _ in range(steps):
        d = np.asarray(goal, dtype=float) - robot.target_pos
        n = float(np.linalg.norm(d))
        robot.target_pos = robot.target_pos + (d if n <= max_step else d * max_step / n)
        robot.command_tool_pose(robot.target_pos, yaw, grip)
        sim.step()


@pytest.mark.parametrize("model, yaw, close", [(m, y, c) for m, y, c in itertools.product(("gp7", "panda", "panda-iterative"), (0.0, math.pi / 2), (True,))]
                         + [("gp7", 0.0, False), ("panda", 0.0, False)])
def test_cube_is_grasped_and_lifted(make, model, yaw, close):
    sim, robot = make(model)
    sim.create_box("stand", (0.12, 0.12, 0.06), (0.5, 0.0, 0.03))  # top at z 0.06
    sim.create_box("cube", (0.04, 0.04, 0.04), (0.5, 0.0, 0.08), mass=0.1, friction=1.0)
    drive(sim, robot, (0.5, 0.0, 0.20), yaw, -1.0, 40)
    drive(sim, robot, (0.5, 0.0, 0.08), yaw, -1.0, 25)
    drive(sim, robot, (0.5, 0.0, 0.08), yaw, 1.0 if close else -1.0, 15)
    offset = sim.base_pose("cube")[0] - robot.tool_pose()[0]
    drive(sim, robot, (0.5, 0.0, 0.23), yaw, 1.0 if close else -1.0, 40)
    cube, orn = sim.base_pose("cube")
    if close:
        assert robot.gripper_opening() == pytest.approx(0.04, abs=0.003)  # holding the cube, not shut
        assert cube[2] == pytest.approx(0.08 + 0.15, abs=0.01)
        assert np.linalg.norm(cube - robot.tool_pose()[0] - offset) < 0.01  # rode along without slipping
        assert math.degrees(2 * math.acos(min(1.0, abs(orn[3])))) < 2.0  # nor tumbling between the jaws
    else:  # control: an open gripper lifts nothing, so the cube rising above is the grasp's doing
        assert cube[2] == pytest.approx(0.08, abs=0.002)
