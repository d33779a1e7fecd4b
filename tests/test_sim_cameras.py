"""Cameras as sensors: rendering agrees with the pinhole model, mounts follow links, rates, noise, pixel observations, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb
import pytest

import sim
from scenarios import Scenario, ScenarioError, load_scenario, parse_scenario
from scenarios.schema import CameraConfig, PhysicsConfig
from sim.camera import CameraError, choose_camera, render
from sim.sensors import CameraSensor, depth_uint8
from sim.simulator import Simulator


def with_cameras(name: str, *cameras: dict, keep: bool = True) -> Scenario:
    """A built-in scenario with extra (or only these) cameras, re-validated as a file would be."""
    data = load_scenario(name).model_dump()
    data["cameras"] = (list(data["cameras"]) if keep else []) + [CameraConfig(**c).model_dump() for c in cameras]
    return Scenario.model_validate(data)


@pytest.fixture
def plate_world():
    """A floor and a thin red plate whose top face centre is at a known point."""
    world = Simulator(PhysicsConfig())
    world.add_ground()
    centre = np.array([0.12, -0.07, 0.001])  # top face centre (m)
    world.create_box("plate", (0.03, 0.03, 0.001), (0.12, -0.07, 0.0005), color=(1.0, 0.0, 0.0, 1.0))
    yield world, centre
    world.close()


OVERHEAD = dict(position=[0.3, 0.2, 0.9], look_at=[0.05, -0.05, 0.0], up=[1.0, 0.0, 0.0], width=160, height=120,
                intrinsics={"fx": 150.0, "fy": 140.0, "cx": 82.0, "cy": 57.5}, near=0.05, far=3.0)
OBLIQUE = dict(position=[-0.2, 0.4, 0.7], look_at=[0.1, -0.05, 0.0], width=120, height=90, fov=0.9, near=0.05, far=3.0)


@pytest.mark.parametrize("placement", [OVERHEAD, OBLIQUE], ids=["overhead", "oblique"])
def test_a_known_point_renders_where_the_pinhole_model_projects_it(plate_world, placement):
    world, centre = plate_world
    sensor = CameraSensor(CameraConfig(name="cam", modalities=("rgb", "depth"), **placement), world)
    frame = sensor.capture()
    assert frame.rgb.shape == (placement["height"], placement["width"], 3) and frame.rgb.dtype == np.uint8
    vs, us = np.nonzero((frame.rgb[..., 0] > 150) & (frame.rgb[..., 1] < 80))
    np.testing.assert_allclose([us.mean(), vs.mean()], frame.camera.project(centre[None])[0], atol=0.5)
    if "intrinsics" in placement:  # the declared intrinsics are the model's, exported in OpenCV's form
        assert frame.camera.to_dict()["K"] == [[150.0, 0.0, 82.0], [0.0, 140.0, 57.5], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(frame.camera.position, placement["position"], atol=1e-12)


def test_depth_in_metres_back_projects_onto_the_surfaces_seen(plate_world):
    world, centre = plate_world
    frame = CameraSensor(CameraConfig(name="cam", modalities=("rgb", "depth"), **OVERHEAD), world).capture()
    assert frame.depth.dtype == np.float32 and frame.depth.shape == (120, 160)
    vs, us = np.nonzero((frame.rgb[..., 0] > 150) & (frame.rgb[..., 1] < 80))
    plate = frame.camera.backproject(np.stack([us, vs], axis=1), frame.depth[vs, us])
    np.testing.assert_allclose(plate[:, 2], centre[2], atol=5e-4)  # the plate's top face, 1 mm up
    assert np.abs(plate[:, :2] - centre[:2]).max() < 0.016  # within the 3 cm plate (plus half a pixel)
    fv, fu = np.nonzero(frame.rgb[..., 1] > 150)  # the floor: its visual top lies 1 mm below z = 0
    floor = frame.camera.backproject(np.stack([fu, fv], axis=1), frame.depth[fv, fu])
    np.testing.assert_allclose(floor[:, 2], -0.001, atol=5e-4)


def test_the_orbit_form_is_pybullets_orbit_camera(plate_world):
    world, _ = plate_world
    cfg = CameraConfig(name="cam", target=(0.3, 0.1, 0.2), distance=1.3, yaw=-2.0, pitch=-1.2, width=64, height=48, fov=0.7)
    model = CameraSensor(cfg, world).model()
    want_view = pb.computeViewMatrixFromYawPitchRoll([0.3, 0.1, 0.2], 1.3, math.degrees(-2.0), math.degrees(-1.2), 0, 2, physicsClientId=world.cid)
    want_proj = pb.computeProjectionMatrixFOV(math.degrees(0.7), 64 / 48, cfg.near, cfg.far, physicsClientId=world.cid)
    np.testing.assert_allclose(model.opengl_view_matrix(), want_view, atol=1e-6)
    np.testing.assert_allclose(model.opengl_projection_matrix(cfg.near, cfg.far, renderer="opengl"), want_proj, atol=1e-6)


WRIST = dict(name="wrist", mount={"link": "panda_hand", "position": [0.08, 0.0, 0.0], "look_at": [0.0, 0.0, 0.12], "up": [1.0, 0.0, 0.0]},
             width=96, height=72, modalities=["rgb", "segmentation"], use=["perception"])


def test_a_mounted_camera_moves_with_its_link():
    env = sim.make_env(with_cameras("reach", WRIST))
    try:
        env.reset(seed=0)
        sensor, robot, cid = env.sensors["wrist"], env.robot, env.sim.cid
        hand = {pb.getJointInfo(robot.body, j, physicsClientId=cid)[12].decode(): j for j in range(pb.getNumJoints(robot.body, physicsClientId=cid))}["panda_hand"]
        frames, tips = [], []
        for q in (robot.home, robot.home + np.array([0.6, -0.3, 0.0, 0.2, 0.0, 0.3, 0.5])):
            for j, angle in zip(robot.arm_ids, q):
                pb.resetJointState(robot.body, j, float(angle), physicsClientId=cid)
            sensor.reset()
            frames.append(sensor.capture())
            link_pos, link_orn = pb.getLinkState(robot.body, hand, computeForwardKinematics=1, physicsClientId=cid)[4:6]
            R = np.array(pb.getMatrixFromQuaternion(link_orn)).reshape(3, 3)
            # The camera sits at the mount point of the link frame and looks along the link's +z.
            np.testing.assert_allclose(frames[-1].camera.position, np.array(link_pos) + R @ [0.08, 0.0, 0.0], atol=1e-6)
            axis = R @ np.array([-0.08, 0.0, 0.12]) / np.hypot(0.08, 0.12)
            np.testing.assert_allclose(frames[-1].camera.R[2], axis, atol=1e-6)
            tips.append(frames[-1].camera.project([pb.getLinkState(robot.body, robot.tool_id, computeForwardKinematics=1, physicsClientId=cid)[4]])[0])
        assert np.linalg.norm(frames[0].camera.position - frames[1].camera.position) > 0.2
        np.testing.assert_allclose(tips[0], tips[1], atol=1e-4)  # the tool point stays put in the image (Bullet link poses: ~1e-7 m)
        # ... and so do the fingers in the rendered images, over a different background.
        masks = [f.segmentation == robot.body for f in frames]
        assert masks[0].sum() > 500 and np.array_equal(masks[0], masks[1])
        assert np.abs(frames[0].rgb.astype(int) - frames[1].rgb.astype(int)).mean() > 3
    finally:
        env.close()


def test_the_tool_mount_names_the_models_tool_link_and_an_unknown_link_is_named():
    for robot in ("panda", "gp7"):
        env = sim.make_env(with_cameras("reach", {**WRIST, "mount": {"link": "tool", "position": [0.0, 0.0, -0.1]}}), robot=robot)
        env.reset(seed=0)
        tool = env.robot.tool_pos
        np.testing.assert_allclose(env.sensors["wrist"].model().position, tool + [0.0, 0.0, 0.1], atol=1e-3)  # tool down: z along the approach
        env.close()
    with pytest.raises(CameraError, match=r"mount link 'panda_hnd' is not a link of robot 'panda'; links: tool, panda_link0, .*panda_hand.* \(did you mean 'panda_hand'\?\)"):
        sim.make_env(with_cameras("reach", {**WRIST, "mount": {"link": "panda_hnd"}}))


def test_rate_hz_reuses_the_last_frame_between_updates():
    scenario = with_cameras("reach", dict(name="slow", position=[0.5, 0.0, 1.1], look_at=[0.5, 0.0, 0.0], up=[1.0, 0.0, 0.0],
                                         width=48, height=48, rate_hz=5.0, use=["pixels"]), keep=False)
    env = sim.make_env(scenario, obs_mode="pixels")
    try:
        obs, _ = env.reset(seed=0)
        images, times = [obs["slow"]], [env.sensors["slow"].capture().time]
        for _ in range(8):  # 20 Hz control: a frame every 4 steps, while the arm keeps moving
            obs, *_ = env.step(np.array([1.0, 1.0, 1.0, 0.0, -1.0]))
            images.append(obs["slow"])
            times.append(env.sensors["slow"].capture().time)
        np.testing.assert_allclose(times, [0.0] * 4 + [0.2] * 4 + [0.4], atol=1e-9)
        changed = [not np.array_equal(a, b) for a, b in zip(images, images[1:])]
        assert changed == [False, False, False, True, False, False, False, True]
        env.reset(seed=0)  # a reset renders afresh
        assert env.sensors["slow"].capture().time == 0.0
    finally:
        env.close()


NOISY = dict(name="table_top", position=[0.5, 0.0, 1.1], look_at=[0.5, 0.0, 0.0], up=[1.0, 0.0, 0.0], width=64, height=64, near=0.4,
             far=1.2, modalities=["rgb", "depth"], use=["pixels"])


def test_noise_comes_from_the_env_seed():
    noisy = with_cameras("reach", {**NOISY, "noise": {"rgb_std": 8.0, "depth_std": 0.005}}, keep=False)
    a, b = sim.make_env(noisy, obs_mode="pixels"), sim.make_env(noisy, obs_mode="pixels")
    clean = sim.make_env(with_cameras("reach", NOISY, keep=False), obs_mode="pixels")
    try:
        first = a.reset(seed=3)[0]
        assert all(np.array_equal(first[k], b.reset(seed=3)[0][k]) for k in first)
        assert not np.array_equal(first["table_top"], b.reset(seed=4)[0]["table_top"])
        truth = clean.reset(seed=3)[0]
        a.reset(seed=3)
        residual = first["table_top"].astype(float) - truth["table_top"]
        inside = (truth["table_top"] > 40) & (truth["table_top"] < 215)  # away from clipping at 0 and 255
        assert residual[inside].std() == pytest.approx(8.0, rel=0.05) and abs(residual[inside].mean()) < 0.3
        depth_noise = a.sensors["table_top"].capture().depth - clean.sensors["table_top"].capture().depth
        assert depth_noise.std() == pytest.approx(0.005, rel=0.05)
    finally:
        a.close(), b.close(), clean.close()


def test_pixel_observations_match_the_declared_space():
    env = sim.make_env("conveyor-pick", obs_mode="pixels")
    try:
        obs, _ = env.reset(seed=0)
        space = env.observation_space
        assert set(space.spaces) == {"wrist", "wrist_depth", "proprio"}  # the eye-in-hand camera is its `use: pixels`
        assert space["wrist"].shape == (84, 84, 3) and space["wrist_depth"].shape == (84, 84, 1)
        for _ in range(3):
            assert space.contains(obs)
            assert {k: v.dtype for k, v in obs.items()} == {"wrist": np.uint8, "wrist_depth": np.uint8, "proprio": np.float32}
            obs, *_ = env.step(np.zeros(5))
        # The top-down view camera, straight down from 1.0 m onto the belt top at 0.1 m: 0.9 m, linear over [0.3, 1.2] m -> 170.
        top = env.sensors["pick_zone"]
        assert top.model().project([[0.5, -0.2, 0.1]])[0] == pytest.approx([41.5, 41.5])
        assert depth_uint8(top.capture(env.np_random).depth, 0.3, 1.2)[41:43, 41:43, 0].tolist() == [[170, 170], [170, 170]]
        np.testing.assert_array_equal(depth_uint8(np.array([[0.2, 0.3, 0.75, 1.2, 5.0]]), 0.3, 1.2)[0, :, 0], [0, 0, 128, 255, 255])
        r = env.robot.reading
        np.testing.assert_allclose(obs["proprio"], [*r.tool_pos, r.tool_yaw, *r.tool_vel, r.opening, *r.q], rtol=1e-6)
        described = env.feature_spec()["observation"]
        assert described["mode"] == "pixels" and described["dim"] == space["proprio"].shape[0]
        assert {i["key"]: tuple(i["shape"]) for i in described["images"]} == {"wrist": (84, 84, 3), "wrist_depth": (84, 84, 1)}
        assert described["images"][0]["mount"]["link"] == "tool" and "camera" not in described["images"][0]
        hd = env.sensors["pick_zone_hd"].model().to_dict()  # perception's camera, exported in OpenCV's convention
        assert hd["K"] == [[240.0, 0.0, 79.5], [0.0, 240.0, 59.5], [0.0, 0.0, 1.0]]
        np.testing.assert_allclose(-np.array(hd["R"]).T @ hd["t"], [0.5, -0.33, 1.0], atol=1e-12)
    finally:
        env.close()


def test_low_detail_visuals_leave_the_physics_as_it_was():
    state, pixels = sim.make_env("conveyor-pick"), sim.make_env("conveyor-pick", obs_mode="pixels")
    try:
        meshes = [v[4].decode() for v in pb.getVisualShapeData(pixels.robot.body, physicsClientId=pixels.sim.cid) if v[4]]
        assert meshes and all("/meshes/collision/" in m for m in meshes)  # the hulls are drawn
        rng = np.random.default_rng(0)
        s_obs, _ = state.reset(seed=5)
        p_obs, _ = pixels.reset(seed=5)
        n = len(p_obs["proprio"])
        for _ in range(60):
            assert np.array_equal(s_obs[:n], p_obs["proprio"])
            action = rng.uniform(-1, 1, 5)
            s_obs, s_reward, *_ = state.step(action)
            p_obs, p_reward, *_ = pixels.step(action)
            assert s_reward == p_reward
    finally:
        state.close(), pixels.close()


def test_the_viewer_keeps_its_camera_and_renders_any_placement():
    env = sim.make_env(with_cameras("conveyor-pick", {**WRIST, "name": "hand_cam"}), render_mode="rgb_array")
    try:
        env.reset(seed=0)
        assert choose_camera(env).name == "overview" and env.camera.name == "overview"  # the first `use: view` camera
        assert render(env, choose_camera(env, "pick_zone_hd", width=160, height=120)).shape == (120, 160, 3)
        assert render(env, choose_camera(env, "hand_cam")).shape == (72, 96, 3)
        with pytest.raises(CameraError, match=r"orbit-form fields \(yaw\) do not apply: this camera is placed by position/look_at"):
            choose_camera(env, "pick_zone", yaw=0.3)
    finally:
        env.close()


BASE_CAMERA = {"name": "cam"}


@pytest.mark.parametrize("fields, message", [
    ({"width": 0}, r"cameras\[0\]\.width: Input should be greater than or equal to 16 \(got 0\)"),
    ({"height": 8}, r"cameras\[0\]\.height: Input should be greater than or equal to 16"),
    ({"fov": 3.5}, r"cameras\[0\]\.fov: Input should be less than or equal to 3"),
    ({"fov": 0.0}, r"cameras\[0\]\.fov: Input should be greater than 0"),
    ({"near": 2.0, "far": 1.0}, r"near \(2\.0 m\) must be less than far \(1\.0 m\)"),
    ({"modalities": ["rgb", "dpeth"]}, r"unknown modality 'dpeth'; valid: rgb, depth, segmentation \(did you mean 'depth'\?\)"),
    ({"modalities": []}, r"modalities must list at least one of rgb, depth, segmentation"),
    ({"use": ["viewer"]}, r"unknown use 'viewer'; valid: view, pixels, perception \(did you mean 'view'\?\)"),
    ({"rate_hz": 7.0}, r"camera 'cam': rate_hz 7\.0 must divide physics\.control_hz 20\.0"),
    ({"rate_hz": 40.0}, r"rate_hz 40\.0 must divide physics\.control_hz"),
    ({"position": [0, 0, 1]}, r"position and look_at go together"),
    ({"position": [0, 0, 1], "look_at": [0, 0, 0]}, r"up \[0\.0, 0\.0, 1\.0\] is zero or parallel to the viewing direction"),
    ({"position": [0, 0, 1], "look_at": [0, 0, 1]}, r"look_at must differ from position"),
    ({"position": [1, 0, 1], "look_at": [0, 0, 0], "pitch": -1.0}, r"orbit-form fields \(pitch\) do not apply"),
    ({"position": [1, 0, 1], "look_at": [0, 0, 0], "mount": {"link": "tool"}}, r"position/look_at .* or mount .*, not both"),
    ({"mount": {"link": "tool", "look_at": [1, 0, 0]}}, r"mount: up \[1\.0, 0\.0, 0\.0\] is zero or parallel"),
    ({"intrinsics": {"fx": 100.0, "fy": 100.0}, "fov": 0.5}, r"give either fov or intrinsics, not both"),
    ({"intrinsics": {"fx": -1.0, "fy": 100.0}}, r"intrinsics\.fx: Input should be greater than 0"),
    ({"noise": {"rgb_std": -1.0}}, r"noise\.rgb_std: Input should be greater than or equal to 0"),
])
def test_bad_camera_settings_are_refused_with_a_clear_error(fields, message):
    data = load_scenario("reach").model_dump(mode="json")
    data["cameras"] = [{**BASE_CAMERA, **fields}]
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_observation_modes_refuse_what_they_cannot_build():
    with pytest.raises(ValueError, match=r"obs_mode must be one of \('state', 'pixels', 'perceived'\), got 'rgb'"):
        sim.make_env("reach", obs_mode="rgb")
    only_view = with_cameras("reach", {"name": "overview"}, keep=False)
    with pytest.raises(CameraError, match=r"obs_mode 'pixels' needs a camera with `use: \[pixels\]` in scenario 'reach'; its cameras: overview"):
        sim.make_env(only_view, obs_mode="pixels")
    with pytest.raises(CameraError, match=r"obs_mode 'perceived' needs a camera with `use: \[perception\]`"):
        sim.make_env(only_view, obs_mode="perceived")
    clash = with_cameras("reach", {**NOISY, "name": "proprio"}, keep=False)
    with pytest.raises(CameraError, match=r"camera names \['proprio'\] clash with the observation keys"):
        sim.make_env(clash, obs_mode="pixels")
    with pytest.raises(CameraError, match=r"scenario 'reach' has no camera 'top'; cameras: overview, table_top"):
        sim.make_env("reach", camera="top")
    capture_needs_rng = CameraSensor(CameraConfig(name="n", noise={"rgb_std": 1.0}), Simulator(PhysicsConfig()))
    with pytest.raises(CameraError, match=r"camera 'n' adds noise: capture\(\) needs the env's random generator"):
        capture_needs_rng.capture()
