"""The suction tool and the palletize cell: real PyBullet, a few seconds of simulated time per test."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pybullet as pb
import pytest
from episode_support import final_info, scenario_data
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim
from scenarios import ScenarioError, load_scenario, parse_scenario
from scenarios.schema import PhysicsConfig, RobotConfig
from sim.experts import make_expert
from sim.experts.palletize import PalletizeExpert
from sim.props.pallet import pallet_slots
from sim.robots.gp7 import GP7
from sim.simulator import Simulator


def _scenario(**changes) -> dict:
    return scenario_data("palletize", changes)



# --- the env contract ---------------------------------------------------------------------------------
def test_check_env_is_clean_and_the_observation_names_the_vacuum():
    env = sim.make_env("palletize")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    assert not [w for w in caught if "genba" in str(w.filename) or "gymnasium" in str(w.filename)], [str(w.message) for w in caught]
    names = [f["name"] for f in env.feature_spec()["observation"]["features"]]
    assert "vacuum_sealed" in names and "gripper_opening" not in names
    assert {"box_position", "slot_position", "slot_to_box", "box_held"} <= set(names)
    env.close()


def test_two_instances_with_the_same_seed_give_the_same_rollout():
    envs = [sim.make_env("palletize") for _ in range(2)]
    experts = [make_expert(e) for e in envs]
    obs = [e.reset(seed=7)[0] for e in envs]
    sealed = 0
    for _ in range(160):  # 8 s: the first box is sealed, carried and put down
        steps = [e.step(x.act(o)) for e, x, o in zip(envs, experts, obs)]
        obs = [s[0] for s in steps]
        np.testing.assert_array_equal(obs[0], obs[1])
        assert steps[0][1:] == steps[1][1:]
        sealed += envs[0].robot.reading.opening
    assert sealed > 0
    for e in envs:
        e.close()


def test_panda_is_not_offered_a_suction_cell():
    assert "genba/Palletize-v0" in sim.ENV_IDS and "genba/PalletizePanda-v0" not in sim.ENV_IDS
    with pytest.raises(ValueError, match="no suction variant"):
        sim.make_env("palletize", robot="panda")


# --- the expert ---------------------------------------------------------------------------------------
def test_expert_stacks_the_pattern():
    env = sim.make_env("palletize")
    expert = make_expert(env)
    infos = [final_info(env, expert, seed) for seed in range(500, 506)]
    wins = sum(i["is_success"] for i in infos)
    assert wins >= 5, infos
    for info in infos:
        if info["is_success"]:
            assert info["boxes_placed"] == 8 and info["max_placement_error_mm"] <= 10.0 and info["collisions"] == 0
            assert info["boxes_per_minute"] > 10.0
    env.close()


def test_sloppy_placement_fails_the_tolerance_check():
    """+-30 mm on each release point: boxes land out of tolerance (or knock the stack); never a success."""
    env = sim.make_env("palletize")
    expert = PalletizeExpert(env, placement_noise=0.03, seed=1)
    for seed in (0, 1):
        info = final_info(env, expert, seed)
        assert not info["is_success"]
        assert info["max_placement_error_mm"] > 10.0 or info["boxes_misplaced"] + info["boxes_fallen"] > 0
    env.close()


# --- the suction cup ----------------------------------------------------------------------------------
def _seal_and_lift(mass: float, up: float = 0.1):
    """The expert seals on the first box at the stop; then the tool goes straight up at `up` m/s for 1 s."""
    spec = parse_scenario(_scenario(**{"parts.mass": mass, "parts.count": 1}))
    env = sim.make_env(spec)
    expert = make_expert(env)
    obs, _ = env.reset(seed=3)
    box = env.task.parts.parts[0].body
    for _ in range(120):
        obs, *_ = env.step(expert.act(obs))
        if env.robot.suction.sealed or env.robot.suction.losses:
            break
    assert env.robot.suction.sealed or env.robot.suction.losses, "the cup never sealed on the box"
    z0 = pb.getBasePositionAndOrientation(box, physicsClientId=env.sim.cid)[0][2]
    for _ in range(20):
        *_, info = env.step(np.array([0, 0, up / spec.robot.max_ee_speed, 0, 1.0], dtype=np.float32))  # vacuum on
    z1 = pb.getBasePositionAndOrientation(box, physicsClientId=env.sim.cid)[0][2]
    result = env.robot.suction.sealed, z1 - z0, info["drops"], env.robot.reading.opening
    env.close()
    return result


@pytest.mark.parametrize("mass, held", [(4.0, True), (5.5, False)])
def test_a_slow_lift_holds_up_to_about_the_holding_force(mass, held):
    """At 0.02 m/s (1 mm per control step: little servo jerk) the constraint's force cap is the holding
    force: 39 N comes up with the cup, 54 N sags off it (measured: 44 N already drops; the rest of the
    50 N goes to the servo's jerk)."""
    sealed, lifted, drops, _ = _seal_and_lift(mass, up=0.02)
    assert sealed == held and drops == (0 if held else 1)
    assert (lifted > 0.005) == held


def test_a_box_within_the_holding_force_is_held():
    sealed, lifted, drops, reading = _seal_and_lift(3.0)  # 29 N against the cup's 50 N, lifted at 0.1 m/s
    assert sealed and lifted > 0.07 and drops == 0 and reading == 1.0


def test_a_box_over_the_holding_force_drops():
    sealed, lifted, drops, reading = _seal_and_lift(6.5)  # 64 N against the cup's 50 N
    assert not sealed and lifted < 0.02 and drops >= 1 and reading == 0.0


def test_vacuum_off_releases_at_once():
    env = sim.make_env("palletize")
    expert = make_expert(env)
    obs, _ = env.reset(seed=3)
    while not env.robot.suction.sealed:
        obs, *_ = env.step(expert.act(obs))
    env.step(np.array([0, 0, 0, 0, -1.0], dtype=np.float32))
    assert not env.robot.suction.sealed and env.robot.suction.losses == 0
    assert pb.getNumConstraints(physicsClientId=env.sim.cid) == 0
    env.close()


def test_reset_releases_a_held_box():
    env = sim.make_env("palletize")
    expert = make_expert(env)
    obs, _ = env.reset(seed=3)
    while not env.robot.suction.sealed:
        obs, *_ = env.step(expert.act(obs))
    env.reset(seed=3)
    assert not env.robot.suction.sealed and pb.getNumConstraints(physicsClientId=env.sim.cid) == 0
    env.close()


# --- the suction GP7 as a robot ------------------------------------------------------------------------
@pytest.fixture
def suction_gp7():
    s = Simulator(PhysicsConfig())
    robot = GP7(s, RobotConfig(model="gp7", tool={"type": "suction"}))
    robot.reset()
    yield s, robot
    s.close()


def test_suction_gp7_home_is_tool_down_in_front_without_self_contact(suction_gp7):
    s, robot = suction_gp7
    assert robot.finger_ids == [] and robot.model.suction_link == "gp7_cup"
    for _ in range(10):
        robot.command_joint_positions(robot.home, -1.0)
        s.step()
    pos, yaw = robot.tool_pose()
    assert pos == pytest.approx([0.40, 0.0, 0.25], abs=0.002) and abs(yaw) < 0.01
    pb.performCollisionDetection(physicsClientId=s.cid)
    assert pb.getContactPoints(robot.body, robot.body, physicsClientId=s.cid) == ()
    assert robot.describe()["tool"] == "suction"


@pytest.mark.parametrize("target", [(0.5, -0.46, 0.2, 0.8), (0.5, 0.3, 0.44, -0.8), (0.7, 0.0, 0.2, 0.0)])
def test_suction_gp7_reaches_targets_pointing_down(suction_gp7, target):
    s, robot = suction_gp7
    goal, yaw = np.array(target[:3]), target[3]
    for _ in range(80):
        robot.command_tool_pose(goal, yaw, -1.0)
        s.step()
    pos, tool_yaw = robot.tool_pose()
    assert np.linalg.norm(pos - goal) < 0.005
    assert abs(math.remainder(tool_yaw - yaw, 2 * math.pi)) < math.radians(2.0)


# --- configuration errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"task.pattern.rows": 0}, "rows"),
    ({"task.pattern.gap": -0.01}, "gap"),
    ({"parts.count": 9}, "parts.count 9 boxes do not fit the pattern's 8 slots"),
    ({"task.pattern.rows": 3}, "overhangs the pallet"),
    ({"task.pallet": "palet"}, "did you mean 'pallet'"),
    ({"robot.tool": None}, "picks boxes by suction"),
    ({"robot.model": "panda"}, "'panda' has no suction variant"),
    ({"robot.tool": {"type": "suction", "mount_xyz": [0, 0, 0.01]}}, "mount_xyz / mount_rpy apply to a robot given by urdf"),
    ({"robot.tool": {"type": "suction", "max_holding_force": 0.0}}, "max_holding_force"),
])
def test_bad_palletize_config_is_a_clear_error(changes, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_scenario(**changes))


def test_a_built_in_arm_keeps_refusing_urdf_tool_keys():
    data = load_scenario("bin-sort").model_dump()
    data["robot"]["tool"] = {"mount_xyz": [0, 0, 0.01]}
    with pytest.raises(ScenarioError, match="robot.tool applies to a robot given by urdf"):
        parse_scenario(data)


def test_slots_turn_alternate_layers_about_the_pallet_centre():
    spec = load_scenario("palletize")
    pallet = next(f for f in spec.fixtures if f.name == spec.task.pallet)
    slots = pallet_slots(spec.task.pattern, spec.parts.size, pallet)
    assert len(slots) == 8
    first, second = slots[:4], slots[4:]
    assert all(s.yaw == 0.0 and s.layer == 0 for s in first)
    assert all(s.yaw == pytest.approx(math.pi / 2) and s.layer == 1 for s in second)
    cx, cy = pallet.position[:2]
    for a, b in zip(first, second):  # the same grid turned a quarter turn: (u, v) -> (-v, u)
        u, v = a.position[0] - cx, a.position[1] - cy
        assert b.position[:2] == pytest.approx((cx - v, cy + u))
        assert b.position[2] - a.position[2] == pytest.approx(spec.parts.size[2])
