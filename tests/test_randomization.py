"""Domain randomisation (randomization.dynamics / sensing / visuals): each factor changes what it names,
within its range, and nothing when off or with play=True; one seed gives one randomised episode."""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb
import pytest

import sim
from scenarios import ScenarioError, load_scenario
from scenarios.randomization import load_profile, with_randomization
from sim.randomization import RandomizationError


def _env(scenario="reach", **overlay):
    return sim.make_env(scenario, randomization=overlay or None)


def _dyn(env, body, link=-1):
    info = pb.getDynamicsInfo(body, link, physicsClientId=env.sim.cid)
    return {"mass": info[0], "friction": info[1], "restitution": info[5]}


def _steps_until_moved(env, steps=6):
    """Control steps after which a constant joint-delta command on joint 0 first shows in the joint."""
    env.reset(seed=0)
    home = env.robot.q[0]
    for k in range(1, steps + 1):
        env.step(np.array([1.0] + [0.0] * (env.action_space.shape[0] - 1), dtype=np.float32))
        if abs(env.robot.q[0] - home) > 1e-3:
            return k
    return None


def test_play_and_absent_sections_are_exactly_nominal():
    plain = sim.make_env("conveyor-pick")
    played = sim.make_env("conveyor-pick", randomization="shop-floor", play=True)
    randomised = sim.make_env("conveyor-pick", randomization="shop-floor")
    try:
        assert played.scenario.randomization.dynamics is None and played.scenario.randomization.sensing is None
        for env in (plain, played, randomised):
            env.reset(seed=3)
        cfg = plain.scenario.parts
        # The task's draws are the same with and without randomisation (its generator is its own).
        assert played.task.infeed.arrivals == plain.task.infeed.arrivals == randomised.task.infeed.arrivals
        for env in (plain, played):
            assert env.robot.gains == env.robot.nominal_gains() and env.robot.command_delay == 0
            assert env.sim.lighting == type(env.sim.lighting)()
            assert all(_dyn(env, p.body)["mass"] == pytest.approx(cfg.mass) for p in env.cell.parts.parts)
        rng = np.random.default_rng(0)
        for _ in range(25):  # past the first part's arrival (<= 1 s)
            action = rng.uniform(-1, 1, plain.action_space.shape).astype(np.float32)
            a, *_ = plain.step(action)
            b, *_ = played.step(action)
            assert np.array_equal(a, b)
        part = plain.task.current
        assert part is not None and _dyn(played, played.task.current.body) == _dyn(plain, part.body)
    finally:
        for env in (plain, played, randomised):
            env.close()


def test_part_dynamics_drawn_per_part_at_spawn_within_range():
    ranges = {"part_mass_scale": [1.5, 2.0], "part_friction_scale": [0.3, 0.5], "part_restitution": [0.2, 0.4]}
    env = sim.make_env("bin-sort", randomization={"dynamics": ranges})
    try:
        env.reset(seed=1)
        for part in env.task.parts:  # laid into the tote at reset
            d, t = _dyn(env, part.body), part.type
            assert 1.5 * t.mass <= d["mass"] <= 2.0 * t.mass
            assert 0.3 * t.friction <= d["friction"] <= 0.5 * t.friction
            assert 0.2 <= d["restitution"] <= 0.4
        masses = {_dyn(env, p.body)["mass"] / p.type.mass for p in env.task.parts}
        assert len(masses) == len(env.task.parts)  # one draw per part
    finally:
        env.close()
    env = sim.make_env("conveyor-pick", randomization={"dynamics": ranges})
    try:
        env.reset(seed=1)
        first = env.cell.parts.parts[0]
        assert first.state == "parked" and _dyn(env, first.body)["mass"] == pytest.approx(env.scenario.parts.mass)
        for _ in range(25):
            env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        assert first.state == "active"  # spawned during the episode: drawn then
        assert 1.5 * env.scenario.parts.mass <= _dyn(env, first.body)["mass"] <= 2.0 * env.scenario.parts.mass
        env.reset(seed=1)  # back to nominal until it spawns again
        assert _dyn(env, first.body)["mass"] == pytest.approx(env.scenario.parts.mass)
    finally:
        env.close()


def test_robot_links_gains_and_damping():
    nominal = _env()
    env = _env(dynamics={"link_mass_scale": [1.1, 1.2], "position_gain_scale": [0.5, 0.6],
                         "velocity_gain_scale": [1.3, 1.4], "joint_damping": [2.0, 3.0]})
    try:
        nominal.reset(seed=0)
        env.reset(seed=0)
        body = env.robot.body
        for link in range(pb.getNumJoints(body, physicsClientId=env.sim.cid)):
            m0 = _dyn(nominal, nominal.robot.body, link)["mass"]
            if m0 > 0:
                assert 1.1 <= _dyn(env, body, link)["mass"] / m0 <= 1.2 + 1e-9
        (kp, kd), (kp0, kd0) = env.robot.gains, env.robot.nominal_gains()
        assert all(0.5 <= a / b <= 0.6 for a, b in zip(kp, kp0)) and all(1.3 <= a / b <= 1.4 for a, b in zip(kd, kd0))
        # Joint damping is not reported by getJointInfo after changeDynamics: read it from the motion.
        # A free-spinning joint 0 (motor off) slows faster with 2-3 N m s/rad of damping.
        speeds = []
        for e in (nominal, env):
            cid, j = e.sim.cid, e.robot.arm_ids[0]
            pb.setJointMotorControl2(e.robot.body, j, pb.VELOCITY_CONTROL, force=0, physicsClientId=cid)
            pb.resetJointState(e.robot.body, j, 0.0, 1.0, physicsClientId=cid)
            for _ in range(10):
                pb.stepSimulation(physicsClientId=cid)
            speeds.append(pb.getJointState(e.robot.body, j, physicsClientId=cid)[1])
        assert speeds[1] < speeds[0] - 0.01
    finally:
        env.close()
        nominal.close()


def test_actuator_delay_holds_commands_back_whole_periods():
    spec = load_scenario("reach")
    spec = spec.model_copy(update={"robot": spec.robot.model_copy(update={"control": "joint_delta"})})
    lags = {}
    for delay in (0, 2):
        env = sim.make_env(spec, randomization={"dynamics": {"actuator_delay": [delay, delay]}})
        try:
            lags[delay] = _steps_until_moved(env)
            assert env.robot.command_delay == delay
        finally:
            env.close()
    assert lags[0] == 1 and lags[2] == 3


def test_observation_noise_on_named_features_only():
    env = _env(sensing={"noise": {"tool_position": 0.01}})
    try:
        obs, _ = env.reset(seed=0)
        r = env.robot.reading
        vec = obs["observation"]
        err = vec[:3] - np.float32(r.tool_pos)
        assert 1e-5 < np.abs(err).max() < 0.06  # 1 cm std
        assert np.array_equal(vec[8:], np.float32(r.q))  # joint_positions untouched
        assert np.array_equal(obs["achieved_goal"], np.float32(env.task.achieved_goal()))
    finally:
        env.close()
    with pytest.raises(RandomizationError, match=r"'tool_pos' is not an observation feature.*did you mean 'tool_position'.*valid: tool_position"):
        _env(sensing={"noise": {"tool_pos": 0.01}})
    with pytest.raises(RandomizationError, match="part_position"):  # bin-sort's features are the valid names there
        _env("bin-sort", sensing={"noise": {"goal": 0.01}})


def _side_by_side(steps=6, **kwargs):
    """Observations of conveyor-pick without and with a sensing latency of 2 periods, on the same actions."""
    plain = sim.make_env("conveyor-pick", **kwargs)
    late = sim.make_env("conveyor-pick", randomization={"sensing": {"latency": [2, 2]}}, **kwargs)
    try:
        truth, seen = [plain.reset(seed=4)[0]], [late.reset(seed=4)[0]]
        action = np.array([0.6, 0.4, -0.5, 0.3, 0.0], dtype=np.float32)  # the tool (and its wrist camera) moves
        for _ in range(steps):
            truth.append(plain.step(action)[0])
            seen.append(late.step(action)[0])
        return truth, seen, sum(size for _, size, _ in plain._robot_features())
    finally:
        plain.close()
        late.close()


def test_latency_delays_the_task_features_in_state_mode_never_the_robot_or_its_command():
    truth, seen, n = _side_by_side(observe_command=True)
    task = slice(n, -4)  # observe_command's 4 values close the vector
    for t in range(len(seen)):
        assert np.array_equal(seen[t][:n], truth[t][:n])  # the robot's own readings: now
        assert np.array_equal(seen[t][-4:], truth[t][-4:])  # its commanded target: now
        assert np.array_equal(seen[t][task], truth[max(0, t - 2)][task])  # the task's features: 2 periods ago
    assert not np.array_equal(truth[6][:n], truth[4][:n]) and not np.array_equal(truth[6][task], truth[4][task])


def test_latency_delays_camera_frames_not_the_robot_readings_in_pixels_mode():
    truth, seen, _ = _side_by_side(obs_mode="pixels")
    for t in range(len(seen)):
        assert np.array_equal(seen[t]["proprio"], truth[t]["proprio"])
        for image in ("wrist", "wrist_depth"):
            assert np.array_equal(seen[t][image], truth[max(0, t - 2)][image])  # the frame taken 2 periods ago
    assert not np.array_equal(truth[6]["wrist"], truth[4]["wrist"])


def test_latency_hands_perception_the_frame_taken_that_long_ago():
    env = sim.make_env("conveyor-pick", obs_mode="perceived", randomization={"sensing": {"latency": [3, 3]}})
    try:
        env.reset(seed=0)
        camera, period = env.sensors["pick_zone_hd"], env.sim.physics.control_period
        for _ in range(12):
            env.step(np.zeros(5, dtype=np.float32))
            now = env.sim.time
            frame = camera.capture()
            if now < 3 * period - 1e-9:  # none has arrived yet: the episode's first frame
                assert frame.time == 0.0
            else:  # a frame every 2 periods (10 Hz); the newest taken at least 3 periods ago is seen
                assert now - 4 * period - 1e-9 <= frame.time <= now - 3 * period + 1e-9
    finally:
        env.close()


def test_frame_drop_repeats_the_previous_frame():
    env = sim.make_env("conveyor-pick", obs_mode="pixels", randomization={"sensing": {"frame_drop": 1.0}})
    try:
        obs, _ = env.reset(seed=0)
        first = obs["wrist"]
        for _ in range(3):
            obs, *_ = env.step(np.array([1, 1, -1, 0, 0], dtype=np.float32))  # the wrist camera moves with the tool
        assert np.array_equal(obs["wrist"], first) and env.sensors["wrist"].capture().time == 0.0
        env.sensors["wrist"].drop_frames(0.0)
        env.step(np.zeros(5, dtype=np.float32))
        assert not np.array_equal(env.step(np.zeros(5, dtype=np.float32))[0]["wrist"], first)
    finally:
        env.close()


def test_visuals_light_colours_and_cameras_within_range():
    v = {"light_direction": 0.3, "light_color_scale": [0.5, 0.6], "ambient_scale": [1.2, 1.3], "diffuse_scale": [1.5, 1.6],
         "specular": [0.2, 0.3], "color_jitter": 0.1,
         "camera_position": 0.02, "camera_rotation": 0.05, "camera_fov": 0.05}
    nominal, env = sim.make_env("conveyor-pick"), sim.make_env("conveyor-pick", randomization={"visuals": v})
    try:
        nominal.reset(seed=2)
        env.reset(seed=2)
        light, base = env.sim.lighting, nominal.sim.lighting
        a, b = np.asarray(light.direction), np.asarray(base.direction)
        angle = math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))
        assert 0 < angle <= 0.3 + 1e-9
        assert all(0.5 <= c / c0 <= 0.6 for c, c0 in zip(light.color, base.color))
        assert 1.2 <= light.ambient / base.ambient <= 1.3
        assert 1.5 <= light.diffuse / base.diffuse <= 1.6
        assert 0.2 <= light.specular - base.specular <= 0.3
        cid = env.sim.cid
        for name in ("out_bin", "conveyor"):
            body = env.sim.body(name)
            for got, was in zip(pb.getVisualShapeData(body, physicsClientId=cid), pb.getVisualShapeData(body, physicsClientId=nominal.sim.cid)):
                diff = np.subtract(got[7][:3], was[7][:3])
                assert np.abs(diff).max() <= 0.1 + 1e-6 and np.abs(diff).max() > 0
        for sensor in env.sensors.values():
            moved, calibrated = sensor.model(), sensor.model(nominal=True)
            shift = calibrated.R @ (moved.position - calibrated.position)  # in the camera's own axes
            assert 0 < np.abs(shift).max() <= 0.02 + 1e-9
            assert 0 < abs(moved.fov_y - calibrated.fov_y) <= 0.05 + 1e-9
        view = env.sensors["pick_zone"]
        assert not np.array_equal(view.capture().rgb, nominal.sensors["pick_zone"].capture().rgb)
        assert view.capture().calibration is not None  # perception keeps the nominal calibration
    finally:
        env.close()
        nominal.close()


def test_light_azimuth_turns_the_light_about_the_vertical_to_any_side():
    """The same height above the horizon, another side: a light from behind the robot is not one tilted from above."""
    env = sim.make_env("conveyor-pick", randomization={"visuals": {"light_azimuth": 3.1416}})
    try:
        base = np.asarray(env.sim.lighting.direction)
        turns = []
        for seed in range(40):
            env.reset(seed=seed)
            d = np.asarray(env.sim.lighting.direction)
            assert np.linalg.norm(d) == pytest.approx(np.linalg.norm(base)) and d[2] == pytest.approx(base[2])
            turns.append(math.remainder(math.atan2(d[1], d[0]) - math.atan2(base[1], base[0]), 2 * math.pi))
        assert max(turns) > math.pi / 2 and min(turns) < -math.pi / 2  # from the far side both ways, not only near the default
    finally:
        env.close()
    narrow = sim.make_env("conveyor-pick", randomization={"visuals": {"light_azimuth": 0.2}})
    try:
        for seed in range(5):
            narrow.reset(seed=seed)
            d = np.asarray(narrow.sim.lighting.direction)
            assert 0 < abs(math.remainder(math.atan2(d[1], d[0]) - math.atan2(base[1], base[0]), 2 * math.pi)) <= 0.2 + 1e-9
    finally:
        narrow.close()


def test_light_coefficients_drawn_past_one_are_clipped_to_one():
    env = sim.make_env("reach", obs_mode="pixels", randomization={"visuals": {"diffuse_scale": [3.0, 4.0], "specular": [0.98, 1.0]}})
    try:
        env.reset(seed=0)
        assert env.sim.lighting.diffuse == 1.0 and env.sim.lighting.specular == 1.0
    finally:
        env.close()


def test_same_seed_same_randomised_episode():
    a, b = (sim.make_env("conveyor-pick", obs_mode="perceived", randomization="shop-floor") for _ in range(2))
    try:
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (12, 5)).astype(np.float32)
        runs = []
        for env in (a, b):
            env.reset(seed=11)  # a second episode: the stream carries on from the seeded one
            obs = [env.reset()[0]]
            obs += [env.step(act)[0] for act in actions]
            runs.append((obs, env.robot.gains, env.sim.lighting))
        (obs_a, gains_a, light_a), (obs_b, gains_b, light_b) = runs
        assert all(np.array_equal(x, y) for x, y in zip(obs_a, obs_b)) and gains_a == gains_b and light_a == light_b
        a.reset(seed=12)
        assert a.robot.gains != gains_a
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("overlay, message", [
    ({"dynamics": {"part_mass_scale": [1.2, 0.8]}}, r"dynamics\.part_mass_scale: part_mass_scale must be \[low, high\] with low <= high"),
    ({"dynamics": {"part_mass_scale": [0.0, 1.0]}}, r"dynamics\.part_mass_scale\[0\]: Input should be greater than 0"),
    ({"dynamics": {"link_mass_scale": [-1.0, 1.0]}}, r"dynamics\.link_mass_scale\[0\]: Input should be greater than 0"),
    ({"dynamics": {"part_mas_scale": [1.0, 1.1]}}, r"dynamics\.part_mas_scale: unknown key \(did you mean 'part_mass_scale'\?\)"),
    ({"dynamics": {"actuator_delay": [0, 1.5]}}, r"dynamics\.actuator_delay\[1\]: Input should be a valid integer"),
    # a FIFO slot per period, made at each reset: 1e9 periods took 42 s and gigabytes a reset
    ({"dynamics": {"actuator_delay": [10**9, 10**9]}}, r"dynamics\.actuator_delay\[0\]: Input should be less than or equal to 1000"),
    ({"sensing": {"latency": [0, 10**9]}}, r"sensing\.latency\[1\]: Input should be less than or equal to 1000"),
    ({"sensing": {"frame_drop": 1.5}}, r"sensing\.frame_drop: Input should be less than or equal to 1"),
    ({"sensing": {"noise": {"tool_position": -0.1}}}, r"sensing\.noise\.tool_position: Input should be greater than or equal to 0"),
    ({"visuals": {"camera_position": -0.01}}, r"visuals\.camera_position: Input should be greater than or equal to 0"),
    ({"visuals": {"specular": [0.3, 0.1]}}, r"visuals\.specular: specular must be \[low, high\] with low <= high"),
    ({"visuals": {"diffuse_scale": [0.0, 2.0]}}, r"visuals\.diffuse_scale\[0\]: Input should be greater than 0"),
    ({"lighting": {}}, r"randomization\.lighting: unknown key"),
    # ran without a word: 20 collisions an episode; numpy overflow at each step; an arm that barely moved
    ({"dynamics": {"link_mass_scale": [1.0, 1e30]}}, r"dynamics\.link_mass_scale\[1\]: Input should be less than or equal to 10"),
    ({"sensing": {"noise": {"tool_position": 1e300}}}, r"sensing\.noise\.tool_position: Input should be less than or equal to 10"),
    ({"dynamics": {"joint_damping": [0.0, 1e30]}}, r"dynamics\.joint_damping\[1\]: Input should be less than or equal to 100"),
])
def test_bad_factors_are_named(overlay, message):
    with pytest.raises(ScenarioError, match=message):
        with_randomization(load_scenario("reach"), overlay)


def test_shop_floor_profile_builds_the_picking_cells():
    profile = load_profile("shop-floor")
    assert set(profile) == {"dynamics", "sensing", "visuals"}
    for name, mode in (("conveyor-pick", "perceived"), ("bin-sort", "state")):
        env = sim.make_env(name, obs_mode=mode, randomization="shop-floor")
        try:
            env.reset(seed=0)
            for _ in range(3):
                obs, reward, *_ = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and np.isfinite(reward)
        finally:
            env.close()
    with pytest.raises(ScenarioError, match="unknown randomisation profile 'shop-flor'.*did you mean 'shop-floor'"):
        load_profile("shop-flor")


def test_palletize_sees_its_command_now_under_latency():
    env = sim.make_env("palletize", randomization={"sensing": {"latency": [2, 2]}})
    try:
        env.reset(seed=0)
        seen = []
        for _ in range(4):
            obs, *_ = env.step(np.array([1.0, 0.5, -0.5, 0.3, 0.0], dtype=np.float32))
            np.testing.assert_allclose(obs[-4:], env.robot.command_offset(), atol=1e-6)
            seen.append(obs[-4:])
        assert np.abs(seen[-1] - seen[-3]).max() > 1e-4  # it changed within the latency: a late one would differ
    finally:
        env.close()
