"""The peg-insert cell: wrist F/T sensor, compliant mode, KPIs and the scripted expert (real PyBullet)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from episode_support import feature_slice, final_info, scenario_data
from gymnasium.utils.env_checker import check_env as gym_check_env
from pydantic import ValidationError

from scenarios import Scenario
from sim.env import make_factory_env
from sim.experts import make_expert


def spec_with(**changes) -> Scenario:
    """peg-insert with nested keys replaced: changes like robot__compliance=None, task__hole__clearance=(...)."""
    return Scenario.model_validate(scenario_data("peg-insert", changes, sep="__"))


def run_expert(env, seed: int) -> dict:
    return final_info(env, make_expert(env), seed)



def test_check_env_and_the_wrist_features_in_newtons():
    env = make_factory_env("peg-insert")
    try:
        gym_check_env(env, skip_render_check=True)
        units = {f["name"]: f["unit"] for f in env.feature_spec()["observation"]["features"]}
        assert units["wrist_force"] == "N" and units["wrist_torque"] == "N.m"
    finally:
        env.close()


def test_two_instances_give_identical_episodes():
    a, b = make_factory_env("peg-insert"), make_factory_env("peg-insert")
    try:
        actions = np.random.default_rng(3).uniform(-1, 1, (60, 5)).astype(np.float32)
        oa, _ = a.reset(seed=11)
        ob, _ = b.reset(seed=11)
        assert np.array_equal(oa, ob)
        for action in actions:
            ra, rb = a.step(action), b.step(action)
            assert np.array_equal(ra[0], rb[0]) and ra[1:4] == rb[1:4] and ra[4] == rb[4]
    finally:
        a.close()
        b.close()


def test_the_wrist_noise_is_the_declared_gaussian_drawn_in_order_from_the_sensors_own_generator():
    # The reading minus the noiseless one is sigma times the next six standard normals of the generator
    # the episode's reset gave the sensor, read after read: past the 256 reads drawn at once, and from
    # the start again after a reset with the same seed.
    env = make_factory_env("peg-insert")
    try:
        wrist, cfg = env.robot.wrist, env.scenario.robot.wrist_ft
        sigma = np.array([cfg.force_noise] * 3 + [cfg.torque_noise] * 3)
        assert sigma.min() > 0
        generators = []
        reset = wrist.reset
        wrist.reset = lambda rng=None: (reset(rng), generators.append(copy.deepcopy(wrist._rng)))
        actions = np.random.default_rng(4).uniform(-1, 1, (300, 5)).astype(np.float32)
        runs = []
        for _ in range(2):
            env.reset(seed=21)
            expected = generators[-1]  # as the sensor had it before its first read
            noise = []
            for action in actions:
                env.step(action)
                noise.append((np.array(wrist.wrench) - np.array(wrist.true_wrench)) / sigma)
            # Row 0 went to the reset's own observation.
            np.testing.assert_allclose(noise, expected.normal(0.0, 1.0, (301, 6))[1:], rtol=0, atol=1e-9)
            runs.append(noise)
        assert np.array_equal(runs[0], runs[1])
    finally:
        env.close()


def quiet_env():
    return make_factory_env(spec_with(robot__wrist_ft__force_noise=0.0, robot__wrist_ft__torque_noise=0.0))


def test_sensor_reads_the_pegs_weight_at_rest_and_a_push_in_the_approach_axis():
    env = quiet_env()
    try:
        env.reset(seed=0)
        grip = env.task.peg.grip
        for _ in range(20):
            obs, *_ = env.step(np.array([0, 0, 0, 0, grip], dtype=np.float32))
        force = feature_slice(env, obs, "wrist_force")
        weight = env.scenario.task.peg.mass * 9.81  # along the approach direction (tool z, down)
        assert force[2] == pytest.approx(weight, abs=0.1) and np.abs(force[:2]).max() < 0.1
        # Press the peg onto the block's top, 25 mm beside the hole: the fixture pushes back along -z of the tool.
        nx, ny, nz = env.task.nominal
        tool_z = nz + env.task.peg.tip_offset
        robot, dt = env.robot, env.scenario.physics.control_period
        for k in range(200):
            target = np.array([nx + 0.025, ny, tool_z + (0.01 if k < 60 else 0.01 - 0.004 * (k - 60) * dt)])
            move = np.clip((target - robot.target_pos) / (env.scenario.robot.max_ee_speed * dt), -0.3, 0.3)
            obs, *_ = env.step(np.array([*move, 0, grip], dtype=np.float32))
        force = feature_slice(env, obs, "wrist_force")
        assert force[2] < -3.0 and abs(force[2]) > 3 * np.abs(force[:2]).max()
    finally:
        env.close()


def test_expert_inserts_within_the_force_limit():
    env = make_factory_env("peg-insert")
    try:
        infos = [run_expert(env, seed) for seed in range(900, 910)]
        assert sum(i["is_success"] for i in infos) >= 9
        assert all(i["peak_force"] < env.scenario.task.force_limit for i in infos if i["is_success"])
    finally:
        env.close()


def stiff_insert(env, seed: int) -> dict:
    """Position control, no compliance: over the nominal hole, then straight down to the depth at 8 mm/s."""
    obs, info = env.reset(seed=seed)
    nx, ny, nz = env.task.nominal
    robot, dt = env.robot, env.scenario.physics.control_period
    tool_z = nz + env.task.peg.tip_offset
    step = env.scenario.robot.max_ee_speed * dt
    z = tool_z + 0.01
    for k in range(env.scenario.max_episode_steps):
        if k > 80:
            z = max(z - 0.008 * dt, tool_z - env.scenario.task.depth - 0.002)
        move = np.clip((np.array([nx, ny, z]) - robot.target_pos) / step, -1, 1)
        obs, _, terminated, truncated, info = env.step(np.array([*move, 0, env.task.peg.grip], dtype=np.float32))
        if terminated or truncated:
            break
    return info


def test_stiff_position_control_jams_or_exceeds_the_limit_where_the_compliant_expert_succeeds():
    tight = dict(task__hole__clearance=(0.0005, 0.0005))
    stiff = make_factory_env(spec_with(robot__compliance=None, **tight))
    compliant = make_factory_env(spec_with(**tight))
    try:
        # Seeds whose hole lies more than 1.5 mm off its nominal position in x or y.
        seeds = []
        for seed in range(200):
            stiff.reset(seed=seed)
            if np.abs(np.subtract(stiff.task.true_hole[:2], stiff.task.nominal[:2])).max() > 0.0015:
                seeds.append(seed)
            if len(seeds) == 3:
                break
        for seed in seeds:
            info = stiff_insert(stiff, seed)
            assert not info["is_success"] and (info["over_force_limit"] or info["jams"] > 0), info
            assert run_expert(compliant, seed)["is_success"]
    finally:
        stiff.close()
        compliant.close()


@pytest.mark.parametrize("changes, message", [
    ({"task__hole__clearance": (0.0, 0.001)}, "greater than 0"),
    ({"task__depth": 0.07}, "sticks out of the jaws"),
    ({"robot__compliance__stiffness": (-1.0, 800.0, 800.0)}, "greater than 0"),
    ({"robot__wrist_ft": None}, "wrist_ft"),
    ({"task__hole__clearance": (0.001, 0.0005)}, "low <= high"),
])
def test_bad_config_is_a_clear_error(changes, message):
    with pytest.raises(ValidationError, match=message):
        spec_with(**changes)
