"""The Gymnasium contract, determinism and isolation, for every registered env."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from episode_support import final_info
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim
from scenarios import load_scenario
from sim.simulator import NoDisplayError


def _has_camera(env_id: str, use: str) -> bool:
    return any(use in c.use for c in load_scenario(gym.spec(env_id).kwargs["scenario"]).cameras)


# Every registered env in state mode; in pixels (perceived) mode, those whose scenario declares a
# `use: pixels` (`use: perception`) camera.
MODES = ([(i, "state") for i in sim.ENV_IDS] + [(i, "pixels") for i in sim.ENV_IDS if _has_camera(i, "pixels")]
         + [(i, "perceived") for i in sim.ENV_IDS if _has_camera(i, "perception")])


@pytest.mark.parametrize("env_id, obs_mode", MODES)
def test_env_checkers_pass_without_warnings(env_id, obs_mode):
    env = gym.make(env_id, render_mode="rgb_array", obs_mode=obs_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The render check would also instantiate render_mode="human" (a GUI); rgb_array is tested below.
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def flat(obs):
    """The float part of an observation as one vector: a state vector, or a Dict's float arrays by key."""
    if not isinstance(obs, dict):
        return obs
    return np.concatenate([np.ravel(obs[k]) for k in sorted(obs) if obs[k].dtype != np.uint8])


def images(obs):
    """The uint8 images of a pixels observation as one vector (empty for a state observation)."""
    arrays = [np.ravel(obs[k]) for k in sorted(obs) if obs[k].dtype == np.uint8] if isinstance(obs, dict) else []
    return np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)


def record(obs, reward=None):
    return (flat(obs) if reward is None else np.append(flat(obs), reward), images(obs))


def rollout(env, seed, steps=200):
    rng = np.random.default_rng(123)
    obs, _ = env.reset(seed=seed)
    out = [record(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        out.append(record(obs, reward))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(record(obs))
    return out


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for r, q in zip(a, b) for x, y in zip(r, q))


def same_up_to_render_noise(a, b, float_tolerance=0.0):
    """Identical float parts; images within one intensity level, in under 0.1% of the pixels. TinyRenderer
    keeps per-connection state that flips an edge pixel's shading by one level now and then, depending on
    how many frames that connection rendered before (measured: ~1 frame in 400, one pixel); two instances
    with the same history render identically. Measured from images (perceived mode), the floats may move
    by `float_tolerance` where such a pixel lies on a part's outline."""
    if len(a) != len(b) or not all(np.allclose(x[0], y[0], rtol=0, atol=float_tolerance) for x, y in zip(a, b)):
        return False
    diff = np.concatenate([np.abs(x[1].astype(int) - y[1].astype(int)) for x, y in zip(a, b)])
    return diff.max(initial=0) <= 1 and np.count_nonzero(diff) <= 1e-3 * max(diff.size, 1)


@pytest.mark.parametrize("env_id, obs_mode", MODES)
def test_same_seed_same_rollout_with_two_instances_alive(env_id, obs_mode):
    a, b = gym.make(env_id, obs_mode=obs_mode).unwrapped, gym.make(env_id, obs_mode=obs_mode).unwrapped
    first = rollout(a, seed=7)
    assert same(first, rollout(b, seed=7))
    again = rollout(a, seed=7)  # the same instance, after a history of renders
    if obs_mode == "state":
        assert same(first, again)
    else:  # perceived: one shading level on an outline pixel moves a sub-pixel edge, well under a millimetre
        assert same_up_to_render_noise(first, again, float_tolerance=1e-3 if obs_mode == "perceived" else 0.0)
    assert not same(first, rollout(a, seed=8))
    a.close(), b.close()


def test_interleaved_instances_do_not_disturb_each_other():
    a, b = sim.make_env("conveyor-pick"), sim.make_env("conveyor-pick")
    alone = rollout(a, seed=3, steps=100)
    rng = np.random.default_rng(123)
    obs, _ = a.reset(seed=3)
    b.reset(seed=99)
    mixed = [record(obs)]
    for _ in range(100):
        b.step(b.action_space.sample())  # stepping another world in between must change nothing here
        obs, reward, terminated, truncated, _ = a.step(rng.uniform(-1, 1, a.action_space.shape))
        mixed.append(record(obs, reward))
        if terminated or truncated:
            obs, _ = a.reset()
            mixed.append(record(obs))
    assert same(alone, mixed)


def test_reset_without_seed_continues_the_seeded_stream():
    env = sim.make_env("reach")
    env.reset(seed=5)
    goals = [env.reset()[0]["desired_goal"] for _ in range(3)]
    env.reset(seed=5)
    assert all(np.array_equal(g, env.reset()[0]["desired_goal"]) for g in goals)
    assert not np.array_equal(goals[0], goals[1])


def test_reach_reward_matches_hand_computation():
    env = sim.make_env("reach")
    achieved = np.array([[0.5, 0.0, 0.2], [0.5, 0.03, 0.2]], dtype=np.float32)
    desired = np.array([[0.5, 0.0, 0.3], [0.5, 0.0, 0.2]], dtype=np.float32)
    # weights in reach.yaml: distance -1.0, success 0.0
    np.testing.assert_allclose(env.compute_reward(achieved, desired, None), [-0.1, -0.03], rtol=1e-6)
    obs, _ = env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(5))
    assert reward == pytest.approx(-np.linalg.norm(np.subtract(env.task.achieved_goal(), env.task.desired_goal())), rel=1e-6)


def test_reach_terminates_on_success_only():
    env = sim.make_env("reach")
    obs, _ = env.reset(seed=1)
    env.task.goal = env.robot.tool_pose()[0] + np.array([0.0, 0.0, 0.02])  # within success_distance 0.05
    _, _, terminated, truncated, info = env.step(np.zeros(5))
    assert terminated and info["is_success"] and not truncated


def test_episode_truncates_at_time_limit():
    env = sim.make_env("reach")
    env.reset(seed=2)
    env.task.goal = np.array([0.65, 0.25, 0.35])
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.array([0, 0, 0, 0, -1.0]))  # stand still
        steps += 1
        assert not terminated
    assert steps == env.scenario.max_episode_steps


def test_conveyor_carries_parts_at_belt_speed_without_teleporting():
    env = sim.make_env("conveyor-pick")
    env.reset(seed=0)
    hold = np.array([0, 0, 0, 0, -1.0])
    while env.task.current is None:
        env.step(hold)
    track = []
    for _ in range(30):  # 1.5 s
        env.step(hold)
        track.append(env.task.part_state()["position"])
    track = np.array(track)
    dt = env.scenario.physics.control_period
    speeds = np.linalg.norm(np.diff(track, axis=0), axis=1) / dt
    # The part moves with the belt (+y here) at the drawn belt speed, smoothly: no step jumps.
    np.testing.assert_allclose(speeds[5:], env.task.conveyor.speed, rtol=0.05)
    assert np.all(np.diff(track[:, 1]) > 0)
    assert abs(track[-1, 0] - track[0, 0]) < 0.005


def test_collision_with_fixture_is_counted():
    env = sim.make_env("conveyor-pick")
    env.reset(seed=0)
    post = np.array(env.scenario.fixtures[0].position)
    info = {}
    for _ in range(60):  # drive the tool into the light-curtain post
        delta = post - env.robot.tool_pose()[0]
        _, _, _, _, info = env.step(np.append(np.clip(delta / 0.03, -1, 1), [0, -1.0]))
    assert info["collisions"] >= 1


@pytest.mark.parametrize("scenario", ["reach", "conveyor-pick", "bin-sort"])
@pytest.mark.parametrize("robot", ["panda", "gp7"])
def test_scripted_expert_succeeds(scenario, robot):
    from sim.experts import make_expert

    env = sim.make_env(scenario, robot=robot)
    expert = make_expert(env)
    wins = 0
    for seed in range(5):
        info = final_info(env, expert, seed)
        wins += info["is_success"]
        assert info.get("collisions", 0) == 0
    assert wins == 5


def test_feature_spec_describes_the_spaces():
    for name in ("reach", "conveyor-pick"):
        env = sim.make_env(name)
        spec = env.feature_spec()
        obs_dim = sum(gym.spaces.flatdim(s) for s in env.observation_space.spaces.values()) if isinstance(
            env.observation_space, gym.spaces.Dict) else env.observation_space.shape[0]
        assert spec["observation"]["dim"] == obs_dim == sum(f["size"] for f in spec["observation"]["features"])
        assert spec["action"]["dim"] == env.action_space.shape[0] == sum(f["size"] for f in spec["action"]["features"])
        assert spec["robot"]["joint_names"] == list(env.robot.model.arm_joints)


def test_observe_command_appends_the_target_ahead_of_the_tool_and_nothing_else_changes():
    plain, commanded = sim.make_env("conveyor-pick"), sim.make_env("conveyor-pick", observe_command=True)
    a, _ = plain.reset(seed=4)
    b, _ = commanded.reset(seed=4)
    assert np.array_equal(b[:33], a) and np.allclose(b[33:], 0.0, atol=1e-6)  # at rest the target is the tool
    for _ in range(5):
        a, *_ = plain.step(np.array([1.0, 0.0, 0.0, 0.5, -1.0], dtype=np.float32))  # full speed in x, turning
        b, *_ = commanded.step(np.array([1.0, 0.0, 0.0, 0.5, -1.0], dtype=np.float32))
    robot = commanded.robot
    np.testing.assert_allclose(b[33:], [*(robot.target_pos - robot.tool_pos), robot.target_yaw - robot.tool_yaw], atol=1e-6)
    assert b[33] > 0.005 and abs(b[36]) > 0.001  # the arm trails its target while it accelerates
    assert np.array_equal(b[:33], a)
    names = [f["name"] for f in commanded.feature_spec()["observation"]["features"]]
    assert names[-2:] == ["tool_target_to_tool", "tool_target_yaw_to_tool"]
    plain.close(), commanded.close()
    with pytest.raises(sim.errors.SimError, match="its task observes them always"):
        sim.make_env("palletize", observe_command=True)


def test_observe_command_on_pixels_ends_proprio_with_the_target_ahead_of_the_tool():
    """A pixel student sees what its controller was told, as a state policy can: same images, proprio + 4 values."""
    plain = sim.make_env("bin-sort", obs_mode="pixels")
    commanded = sim.make_env("bin-sort", obs_mode="pixels", observe_command=True)
    a, _ = plain.reset(seed=3)
    b, _ = commanded.reset(seed=3)
    action = np.array([0.0, 1.0, -0.5, 0.5, -1.0], dtype=np.float32)
    for _ in range(4):
        a, *_ = plain.step(action)
        b, *_ = commanded.step(action)
    n = a["proprio"].shape[0]
    assert commanded.observation_space["proprio"].shape == (n + 4,)
    assert np.array_equal(b["proprio"][:n], a["proprio"]) and np.array_equal(b["wrist"], a["wrist"])
    robot = commanded.robot
    np.testing.assert_allclose(b["proprio"][n:], [*(robot.target_pos - robot.tool_pos), robot.target_yaw - robot.tool_yaw], atol=1e-6)
    assert b["proprio"][n + 1] > 1e-4  # the arm trails its target (in y) while it accelerates
    names = [f["name"] for f in commanded.feature_spec()["observation"]["features"]]
    assert names[-2:] == ["tool_target_to_tool", "tool_target_yaw_to_tool"]
    plain.close(), commanded.close()


def test_joint_delta_control_moves_joints():
    env = sim.make_env("reach", control="joint_delta")
    env.reset(seed=0)
    q0 = env.robot.joint_positions()
    for _ in range(10):
        env.step(np.array([1.0] + [0.0] * 6 + [-1.0]))
    moved = env.robot.joint_positions() - q0
    # Joint 1 turns at max_joint_speed_fraction (0.5) x 2.175 rad/s for 10 control periods; others stay.
    assert moved[0] == pytest.approx(0.5 * 2.175 * 10 * env.scenario.physics.control_period, abs=0.05)
    assert np.all(np.abs(moved[1:]) < 0.02)


def test_rgb_array_render_shows_the_scene():
    env = sim.make_env("conveyor-pick", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    cam = env.scenario.cameras[0]
    assert frame.shape == (cam.height, cam.width, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # not a blank image


def test_gui_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(NoDisplayError, match="needs a display"):
        sim.make_env("reach", render_mode="human")


def test_nan_action_is_rejected():
    env = sim.make_env("reach")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0, 0]))


def test_reach_reports_collisions_with_the_table_and_cycle_time():
    env = sim.make_env("reach")
    env.reset(seed=0)
    env.task.goal = np.array([0.5, 0.0, -0.3])  # below the table top: the arm is driven into it
    info = {}
    for _ in range(40):
        _, _, _, _, info = env.step(np.array([0, 0, -1.0, 0, -1.0]))
    assert info["collisions"] >= 1 and "cycle_time" not in info
    env.reset(seed=1)
    env.task.goal = env.robot.tool_pos + np.array([0.0, 0.0, 0.02])
    _, _, terminated, _, info = env.step(np.zeros(5))
    assert terminated and info["cycle_time"] == pytest.approx(env.scenario.physics.control_period)
