"""Bring your own robot: a scenario names an arm by URDF (robot.urdf) instead of a built-in model.

Two arms shipped by pybullet_data, used as a user would (paths in a scenario file written here),
run reach and conveyor-pick with the scripted experts; malformed robot files get errors naming the
scenario file, the URDF, the element and the scenario key. Real PyBullet, no mocks.
"""

import os
from pathlib import Path

import numpy as np
import pybullet as pb
import pybullet_data
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from policies.evaluate import run_episodes
from scenarios import ScenarioError, load_scenario
from scenarios.loader import BUILTIN_DIR
from scenarios.schema import RobotConfig
from sim import make_env
from sim.errors import SimError
from sim.experts import make_expert
from sim.robots.gp7 import ASSET_DIR as GP7_ASSET_DIR
from sim.robots.gp7 import gp7_tool_down_ik
from sim.robots.user import ToolDownSolver, user_robot_model

DATA = Path(pybullet_data.getDataPath())
ARMS = {
    "iiwa": {"urdf": DATA / "kuka_iiwa" / "model.urdf", "name": "lbr_iiwa", "joints": 7,
             # the real LBR iiwa 14's rated speeds (deg/s 85, 85, 100, 75, 130, 135, 135); the URDF says 10 rad/s
             "robot": {"max_joint_speed": [1.48, 1.48, 1.74, 1.31, 2.27, 2.36, 2.36],
                       "tool": {"mount_xyz": [0.0, 0.0, 0.045]}}},  # link_7's frame sits 45 mm inside its flange face
    "xarm6": {"urdf": DATA / "xarm" / "xarm6_robot.urdf", "name": "xarm6", "joints": 6, "robot": {}},
}


def user_scenario(tmp_path: Path, cell: str, arm: str, episode_steps_scale: float = 1.0, **robot) -> Path:
    """A copy of a built-in cell whose robot is the arm's URDF, named by a path relative to the file."""
    data = yaml.safe_load((BUILTIN_DIR / f"{cell}.yaml").read_text())
    spec = ARMS[arm]
    data["robot"].pop("model")
    data["robot"].update({"urdf": os.path.relpath(spec["urdf"], tmp_path), **spec["robot"], **robot})
    data["max_episode_steps"] = round(data["max_episode_steps"] * episode_steps_scale)
    path = tmp_path / f"{cell}-{arm}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("arm", ["iiwa", "xarm6"])
def test_user_arm_runs_reach_and_conveyor_pick(tmp_path, arm):
    reach = make_env(str(user_scenario(tmp_path, "reach", arm)))
    try:
        robot = reach.unwrapped.robot
        assert robot.model.name == ARMS[arm]["name"] and len(robot.arm_ids) == ARMS[arm]["joints"]
        described = robot.describe()
        assert described["model"] == ARMS[arm]["name"] and described["rated_payload"] is None
        assert ARMS[arm]["urdf"].as_posix() in described["source"]
        # At home the tool points straight down with its jaws along x.
        quat = pb.getLinkState(robot.body, robot.tool_id, computeForwardKinematics=1, physicsClientId=robot.sim.cid)[5]
        assert abs(robot.tool_yaw) < 1e-3 and np.allclose(np.abs(quat), [1, 0, 0, 0], atol=1e-3)
        check_env(reach.unwrapped, skip_render_check=True)
        result = run_episodes(reach, make_expert(reach), 10, 0, reach.unwrapped.scenario.physics.control_hz)
        assert result.successes >= 9, result.line()
    finally:
        reach.close()
    pick = make_env(str(user_scenario(tmp_path, "conveyor-pick", arm)))
    try:
        result = run_episodes(pick, make_expert(pick), 10, 0, pick.unwrapped.scenario.physics.control_hz)
        assert result.successes >= 9, result.line()
    finally:
        pick.close()


def test_user_arm_carries_the_suction_cup_and_stacks_the_pallet(tmp_path):
    """The iiwa with genba's suction tool on palletize; the arm is slower than the GP7 the cell was laid out
    for, so it moves at 0.5 m/s and gets 2.2x the episode (measured: 3 of 3 stacks at 0.6 mm placement error)."""
    path = user_scenario(tmp_path, "palletize", "iiwa", episode_steps_scale=2.2, max_ee_speed=0.5,
                         tool={"type": "suction", "mount_xyz": [0.0, 0.0, 0.045]})
    env = make_env(str(path))
    try:
        robot = env.unwrapped.robot
        assert robot.describe()["tool"] == "suction" and robot.finger_ids == [] and robot.suction is not None
        assert "suction tool" in robot.model.source
        result = run_episodes(env, make_expert(env), 2, 0, env.unwrapped.scenario.physics.control_hz)
        assert result.successes == 2 and result.task_kpis["drops"] == 0, result.line()
    finally:
        env.close()


# --- closed-form IK where the arm's layout allows it ---------------------------------------------------------
def _tool_pose(model, q):
    """Forward kinematics of the model's URDF: (tool point m, rotation) with the arm at q, the rest at 0."""
    solver = ToolDownSolver(model.urdf_path, len(model.arm_joints))
    try:
        return solver.pose(q)
    finally:
        solver.close()


def test_a_planar_six_axis_arm_gets_the_closed_form_that_puts_the_tool_exactly(tmp_path):
    model = user_robot_model(RobotConfig(urdf=str(ARMS["xarm6"]["urdf"])))
    assert model.tool_down_ik is not None and "IK: closed form" in model.source
    rng = np.random.default_rng(0)
    for _ in range(20):  # targets across the arm's tool-down reach, any yaw
        z, r = model.tool_down_reach[rng.integers(len(model.tool_down_reach))]
        azimuth, yaw = rng.uniform(-1.2, 1.2), rng.uniform(-2.0, 2.0)
        target = np.array([0.8 * r * np.cos(azimuth), 0.8 * r * np.sin(azimuth), z])
        position, rot = _tool_pose(model, model.tool_down_ik(*target, yaw, list(model.home)))
        assert np.linalg.norm(position - target) < 1e-5 and rot[2, 2] < -0.99999
        assert abs(np.remainder(np.arctan2(rot[1, 0], rot[0, 0]) - yaw + np.pi, 2 * np.pi) - np.pi) < 1e-4


def test_the_fitted_closed_form_of_a_users_gp7_file_is_the_built_in_gp7s():
    """The shipped GP7 URDF given as a user's file (the gripper mounted as the built-in one is): the angles the
    fit finds from the geometry are the ones sim/robots/gp7.py derives by hand."""
    model = user_robot_model(RobotConfig(urdf=str(GP7_ASSET_DIR / "gp7.urdf"), flange_link="link_6_t", name="my-gp7",
                                         tool={"mount_rpy": [0.0, -np.pi / 2, np.pi]}))
    assert model.tool_down_ik is not None
    for target in [(0.5, 0.1, 0.2, 0.3), (0.4, -0.3, 0.1, -0.5), (0.65, 0.2, 0.35, 1.0)]:
        assert np.allclose(model.tool_down_ik(*target, [0.0] * 6), gp7_tool_down_ik(*target, [0.0] * 6), atol=5e-4)


@pytest.mark.parametrize("arm, robot, why", [
    ("iiwa", {}, "7 arm joints"),
    ("xarm6", {"tool": {"mount_xyz": [0.0, 0.03, 0.0]}}, "or the tool point, lies off the arm's plane"),
])
def test_other_arms_keep_the_numerical_ik_and_say_why(arm, robot, why):
    model = user_robot_model(RobotConfig(urdf=str(ARMS[arm]["urdf"]), **{**ARMS[arm]["robot"], **robot}))
    assert model.tool_down_ik is None and "IK: numerical (no closed form: " in model.source and why in model.source


def test_overrides_reach_the_simulated_joints(tmp_path):
    path = user_scenario(tmp_path, "reach", "xarm6", name="my-xarm", max_joint_speed=1.5, max_joint_effort=[40.0, 40, 30, 20, 20, 10],
                         home=[0.0, -0.24, -0.85, 0.0, 1.09, 0.0], rated_payload=5.0)
    env = make_env(str(path))
    try:
        robot = env.unwrapped.robot
        assert robot.model.name == "my-xarm" and robot.describe()["rated_payload"] == 5.0
        assert robot.max_velocity.tolist() == [1.5] * 6 and robot.max_force.tolist() == [40, 40, 30, 20, 20, 10]
        assert np.allclose(robot.q, [0.0, -0.24, -0.85, 0.0, 1.09, 0.0], atol=0.02)
    finally:
        env.close()
    # A built-in arm may stand in for the scenario's URDF one.
    env = make_env(str(path), robot="panda")
    try:
        assert env.unwrapped.robot.model.name == "panda"
    finally:
        env.close()


# --- malformed robot files ----------------------------------------------------------------------------
LINK = '<link name="{0}"><inertial><mass value="{1}"/><inertia ixx="1e-3" ixy="0" ixz="0" iyy="1e-3" iyz="0" izz="1e-3"/></inertial></link>'
JOINT = ('<joint name="{0}" type="revolute"><parent link="{1}"/><child link="{2}"/><origin xyz="0 0 0.2"/>'
         '<axis xyz="0 1 0"/><limit lower="-2" upper="2" velocity="2" effort="50"/></joint>')


def small_arm(links=None, joints=None) -> str:
    """A 3-joint arm: base -> l1 -> l2 -> flange (each overridable by name)."""
    links = {"base": LINK.format("base", 2), "l1": LINK.format("l1", 1), "l2": LINK.format("l2", 1), "flange": LINK.format("flange", 0.2),
             **(links or {})}
    joints = {"j1": JOINT.format("j1", "base", "l1"), "j2": JOINT.format("j2", "l1", "l2"), "j3": JOINT.format("j3", "l2", "flange"),
              **(joints or {})}
    return '<?xml version="1.0"?>\n<robot name="small">\n' + "\n".join([*links.values(), *joints.values()]) + "\n</robot>\n"


def robot_error(tmp_path, urdf_text: str | None, **robot) -> str:
    urdf = tmp_path / "arm.urdf"
    if urdf_text is not None:
        urdf.write_text(urdf_text)
    data = yaml.safe_load((BUILTIN_DIR / "reach.yaml").read_text())
    data["robot"] = {"urdf": "arm.urdf", **robot}
    path = tmp_path / "cell.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    message = str(exc.value)
    assert str(path) in message and "robot" in message, message
    return message


def test_a_valid_small_arm_loads(tmp_path):
    (tmp_path / "arm.urdf").write_text(small_arm())
    data = yaml.safe_load((BUILTIN_DIR / "reach.yaml").read_text())
    data["robot"] = {"urdf": "arm.urdf"}
    (tmp_path / "cell.yaml").write_text(yaml.safe_dump(data))
    config = load_scenario(tmp_path / "cell.yaml").robot
    chain = config.arm_chain()
    assert config.urdf == str((tmp_path / "arm.urdf").resolve()) and config.robot_name == "small"
    assert [j.name for j in chain.arm_joints] == ["j1", "j2", "j3"] and chain.flange_link == "flange"


def test_missing_file(tmp_path):
    msg = robot_error(tmp_path, None)
    assert "robot.urdf" in msg and f"{tmp_path.resolve() / 'arm.urdf'}: no such file" in msg


def test_not_xml(tmp_path):
    msg = robot_error(tmp_path, "<robot name='x'><link name='a'>\n</robot>")
    assert "arm.urdf:2:" in msg and "not valid XML" in msg


def test_not_a_robot(tmp_path):
    msg = robot_error(tmp_path, "<sdf version='1.6'><model name='x'/></sdf>")
    assert "the top element is <sdf>, a URDF's is <robot>" in msg


def test_missing_link_suggests(tmp_path):
    msg = robot_error(tmp_path, small_arm(), flange_link="flang")
    assert "robot.flange_link: 'flang' is not a <link> of" in msg and "did you mean 'flange'?" in msg and "arm.urdf" in msg


def test_missing_joint_suggests(tmp_path):
    msg = robot_error(tmp_path, small_arm(), arm_joints=["j1", "j22", "j3"])
    assert "robot.arm_joints: 'j22' is not a <joint> of" in msg and "did you mean 'j2'?" in msg


def test_link_without_inertial(tmp_path):
    msg = robot_error(tmp_path, small_arm(links={"l2": '<link name="l2"><visual><geometry><box size="0.1 0.1 0.1"/></geometry></visual></link>'}))
    assert "arm.urdf: <link name='l2'> has no <inertial> with a <mass>" in msg and "1 kg" in msg


def test_joint_without_limits(tmp_path):
    no_limit = '<joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><axis xyz="0 1 0"/></joint>'
    msg = robot_error(tmp_path, small_arm(joints={"j2": no_limit}))
    assert "<joint name='j2'> has no <limit lower=... upper=...>" in msg
    no_speed = JOINT.format("j2", "l1", "l2").replace(' velocity="2"', "")
    msg = robot_error(tmp_path, small_arm(joints={"j2": no_speed}))
    assert "<joint name='j2'> has no positive <limit velocity=...>" in msg and "robot.max_joint_speed" in msg


def test_mimic_joint_in_the_arm(tmp_path):
    mimic = JOINT.format("j3", "l2", "flange").replace("</joint>", '<mimic joint="j2" multiplier="1"/></joint>')
    msg = robot_error(tmp_path, small_arm(joints={"j3": mimic}))
    assert "<joint name='j3'> has <mimic joint='j2'>, which PyBullet ignores" in msg


def test_broken_chain(tmp_path):
    msg = robot_error(tmp_path, small_arm(), base_link="l2", flange_link="l1")
    assert "no chain of joints from <link name='l2'> (robot.base_link) to <link name='l1'>" in msg


def test_a_loop_of_joints_beside_the_tree(tmp_path):
    """Two links joined both ways, apart from the arm: naming one the flange made the chain walk loop for ever."""
    text = small_arm(links={"a": LINK.format("a", 1), "b": LINK.format("b", 1)},
                     joints={"ab": JOINT.format("ab", "a", "b"), "ba": JOINT.format("ba", "b", "a")})
    msg = robot_error(tmp_path, text, flange_link="b")
    assert "<link name='a'> does not hang below the root link 'base' (its joints close a loop); a URDF is a tree" in msg


@pytest.mark.parametrize("links, joints, message", [
    ({"l1": LINK.format("l1", "nan")}, {}, "<link name='l1'> <mass>: value='nan' is not a finite number"),  # ran, return nan
    ({}, {"j2": JOINT.format("j2", "l1", "l2").replace('lower="-2"', 'lower="nan"')},
     "<joint name='j2'> <limit>: lower='nan' is not a finite number"),  # numpy OverflowError
    ({}, {"j2": JOINT.format("j2", "l1", "l2").replace('xyz="0 1 0"', 'xyz="0 0 0"')},
     "<joint name='j2'>: <axis xyz='0 0 0'> must not be all 0"),  # SystemError in calculateJacobian
    ({"x": LINK.format("x", 1)}, {"xx": JOINT.format("xx", "x", "x")}, "<joint name='xx'>: its parent and child are the same link"),
    # PyBullet read these without a word: a NaN origin surfaced as "no home"; a short or unreadable one ran as zeros
    ({}, {"j2": JOINT.format("j2", "l1", "l2").replace('xyz="0 0 0.2"', 'xyz="nan 0 0.2"')},
     "<joint name='j2'> <origin>: xyz='nan 0 0.2' must be 3 finite numbers"),
    ({}, {"j2": JOINT.format("j2", "l1", "l2").replace('<origin xyz="0 0 0.2"/>', '<origin xyz="0 0 0.2" rpy="0 0"/>')},
     "<joint name='j2'> <origin>: rpy='0 0' must be 3 finite numbers"),
    ({"l1": LINK.format("l1", 1).replace("</inertial>", '<origin xyz="0 a 0"/></inertial>')}, {},
     "<link name='l1'> <origin>: xyz='0 a 0' must be 3 finite numbers"),
    ({"l1": LINK.format("l1", 1).replace('ixx="1e-3"', 'ixx="-0.5"')}, {},
     "<link name='l1'> <inertia>: ixx='-0.5': a moment of inertia must be a number >= 0"),  # ran as if sound
    ({"l1": '<link name="l1"><inertial><mass value="1"/></inertial></link>'}, {},
     "<link name='l1'>: <inertial> has a <mass> but no <inertia"),  # pybullet.error: Cannot load URDF file.
])
def test_numbers_and_joints_pybullet_would_choke_on(tmp_path, links, joints, message):
    assert message in robot_error(tmp_path, small_arm(links=links, joints=joints))


def test_an_arm_that_cannot_reach_a_home_says_so_naming_the_users_file(tmp_path):
    """The flange moved up the chain: no tool-down home. It was a UrdfError traceback naming genba's generated copy."""
    path = user_scenario(tmp_path, "reach", "xarm6", flange_link="link3")
    with pytest.raises(SimError, match=r"robot.home: no joint angles put the tool straight down .* for .*/xarm/xarm6_robot.urdf; "
                                       r"give robot.home"):
        make_env(str(path))


def test_home_of_the_wrong_length(tmp_path):
    msg = robot_error(tmp_path, small_arm(), home=[0.0, 0.1])
    assert "robot.home has 2 values, the arm has 3 joints (j1, j2, j3)" in msg


@pytest.mark.parametrize("scale", ["0 0 0", "1000 1000 1000", "0.001 0.001"])
def test_a_mesh_scale_that_cannot_convert_units(tmp_path, scale):
    """Scale 0 ran with the link's collision gone; 1000 where 0.001 was meant ran at 0% with a kilometre-long link."""
    meshed = LINK.format("l1", 1).replace("</link>", f'<collision><geometry><mesh filename="l1.stl" scale="{scale}"/></geometry></collision></link>')
    msg = robot_error(tmp_path, small_arm(links={"l1": meshed}))
    assert f"<link name='l1'> <mesh>: scale='{scale}'" in msg


def test_missing_mesh(tmp_path):
    meshed = '<link name="l1"><inertial><mass value="1"/><inertia ixx="1e-3" iyy="1e-3" izz="1e-3"/></inertial><visual><geometry><mesh filename="meshes/l1.stl"/></geometry></visual></link>'
    msg = robot_error(tmp_path, small_arm(links={"l1": meshed}))
    assert "<link name='l1'>: <mesh filename='meshes/l1.stl'> not found" in msg


def test_model_and_urdf_exclude_each_other(tmp_path):
    msg = robot_error(tmp_path, small_arm(), model="panda")
    assert "give exactly one of robot.model" in msg and "not both" in msg
    data = yaml.safe_load((BUILTIN_DIR / "reach.yaml").read_text())
    data["robot"]["flange_link"] = "x"
    (tmp_path / "builtin.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match="robot.flange_link applies to a robot given by urdf"):
        load_scenario(tmp_path / "builtin.yaml")
