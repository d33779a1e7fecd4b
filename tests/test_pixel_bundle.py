"""Pixel bundles (format 3): a real tiny pixel run exported, its ONNX and TorchScript graphs checked against
the network on recorded camera observations, the manifest's images and spec hash, the loader's refusals,
and evaluation through load_policy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bridge.spec import spec_hash, spec_text
from policies.bundle import BundleError, load_bundle
from policies.config import parse_overrides, resolve_config
from policies.envs import make_env, make_expert
from policies.evaluate import EvalError, evaluate
from policies.graph import ExportError
from policies.pixel_data import PixelData
from policies.pixel_export import EXPORT_RECORDED_SAMPLES, export_pixel_bundle, recorded_samples
from policies.pixel_net import PixelPolicyNet, load_pixel_net, split_keys
from policies.policy import ChunkedPolicy, load_policy
from policies.run_export import export_run
from policies.snapshot import run_snapshot
from policies.train import train

SCENARIO = "bin-sort"
PARITY_STEPS = 1000
PARITY_TOLERANCE = 1e-5
REPO = Path(__file__).resolve().parents[1]
READINGS = 18  # the robot's 14 readings and the 4 command values (observe_command)


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    """A real pixel run, as small as training allows (2 demo episodes, 5 gradient steps, no extra rounds), its readings
    ending with the commanded tool pose as the preset's (READINGS values)."""
    out = tmp_path_factory.mktemp("pixel") / "run"
    overrides = parse_overrides(["obs_mode=pixels", "observe_command=true", "bc.demo_episodes=2", "bc.iterations=5",
                                 "bc.batch_size=8", "bc.rounds=0", "eval_episodes=1"])
    train(resolve_config(SCENARIO, "bc", overrides), out, progress=False)
    return out


@pytest.fixture(scope="module")
def bundle_dir(pixel_run, tmp_path_factory):
    return export_run(pixel_run, tmp_path_factory.mktemp("pixel-bundle") / "bin-sort-px")


@pytest.fixture(scope="module")
def recorded():
    """PARITY_STEPS real pixels observations of the scripted expert's episodes, batched per key."""
    env = make_env(SCENARIO, obs_mode="pixels", observe_command=True)
    try:
        expert, steps, episode = make_expert(env), [], 0
        while len(steps) < PARITY_STEPS:
            obs, _ = env.reset(seed=episode)
            expert.reset()
            done = False
            while not done and len(steps) < PARITY_STEPS:
                steps.append(obs)
                obs, _, terminated, truncated, _ = env.step(expert.act(obs))
                done = terminated or truncated
            episode += 1
    finally:
        env.close()
    return {k: np.stack([s[k] for s in steps]) for k in steps[0]}


def _copy(bundle_dir, tmp_path):
    return shutil.copytree(bundle_dir, tmp_path / "copy")


def _edit_manifest(path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_onnx_torchscript_and_the_network_agree_on_recorded_observations(pixel_run, bundle_dir, recorded):
    import torch

    net = load_pixel_net(run_snapshot(pixel_run))
    assert len(recorded["proprio"]) == PARITY_STEPS
    assert len({recorded["infeed_px"][i].tobytes() for i in range(0, PARITY_STEPS, 50)}) > 10  # the scene moves
    onnx, script = load_bundle(bundle_dir, backend="onnx"), load_bundle(bundle_dir, backend="torchscript")
    with torch.inference_mode():
        expected = net(*[torch.from_numpy(recorded[image.key]) for image in onnx.images],
                       torch.from_numpy(recorded["proprio"])).numpy()
    diffs = {}
    for bundle in (onnx, script):
        got = bundle.act(recorded)
        assert got.shape == (PARITY_STEPS, 5) and got.dtype == np.float32
        diffs[bundle.backend] = float(np.max(np.abs(got - expected)))
    print(f"max |action - network| over {PARITY_STEPS} recorded observations: {diffs}")
    assert max(diffs.values()) <= PARITY_TOLERANCE, diffs
    one = {k: v[123] for k, v in recorded.items()}  # one observation, unbatched: the batch's row
    np.testing.assert_allclose(onnx.act(one), onnx.act(recorded)[123], atol=1e-6, rtol=0)


def test_the_export_self_check_runs_on_steps_the_run_recorded(pixel_run, bundle_dir):
    check = json.loads((bundle_dir / "manifest.json").read_text())["policy"]["export_check"]
    steps = len(PixelData.load(pixel_run / "data" / "round_0"))
    assert check["samples"] == min(EXPORT_RECORDED_SAMPLES, steps) > 50
    assert check["observations"] == f"{check['samples']} steps recorded in data/round_0"
    assert max(check["max_abs_diff_onnx"], check["max_abs_diff_torchscript"]) <= PARITY_TOLERANCE


def test_recorded_readings_split_back_into_their_keys_and_other_inputs_are_refused(tmp_path):
    from gymnasium import spaces

    space = spaces.Dict({"cam": spaces.Box(0, 255, (4, 4, 3), np.uint8), "proprio": spaces.Box(-9, 9, (3,), np.float32),
                         "desired_goal": spaces.Box(-9, 9, (2,), np.float32)})
    n = 5
    images = {"cam": np.arange(n * 48, dtype=np.uint8).reshape(n, 4, 4, 3)}
    vectors = np.arange(n * 5, dtype=np.float32).reshape(n, 5)  # record_pixels joins proprio, then desired_goal
    data = PixelData(images, vectors, np.zeros((n, 2), np.float32), np.zeros(n, np.int32), np.ones(1, bool), np.zeros((n, 1), np.float32))
    obs = data.observations(np.array([1, 3]), space)
    assert np.array_equal(obs["cam"], images["cam"][[1, 3]])
    assert np.array_equal(obs["proprio"], vectors[[1, 3], :3]) and np.array_equal(obs["desired_goal"], vectors[[1, 3], 3:])
    data.save(tmp_path / "data" / "round_0")
    samples, source = recorded_samples(tmp_path, space)
    assert source == "5 steps recorded in data/round_0" and np.array_equal(samples["proprio"], vectors[:, :3])
    other = spaces.Dict({"wrist": space["cam"], "proprio": space["proprio"], "desired_goal": space["desired_goal"]})
    with pytest.raises(ExportError, match=r"round_0: the recorded steps hold cameras \['cam'\] and 5 readings; the "
                                          r"observation has cameras \['wrist'\]"):
        recorded_samples(tmp_path, other)
    assert recorded_samples(tmp_path / "elsewhere", space) is None  # a run that kept no data: random samples


def test_the_manifest_describes_each_camera_input_and_the_graph_takes_them(bundle_dir):
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    assert m["format_version"] == 3
    assert [(i.key, i.shape, i.dtype, i.modality) for i in bundle.images] == [
        ("infeed_px", (84, 84, 3), "uint8", "rgb"), ("infeed_px_depth", (84, 84, 1), "uint8", "depth"),
        ("wrist", (84, 84, 3), "uint8", "rgb"), ("wrist_depth", (84, 84, 1), "uint8", "depth")]
    rgb, depth, wrist, _ = m["observation"]["images"]
    assert wrist["mount"]["link"] == "tool" and "camera" not in wrist  # eye-in-hand: posed by the robot, not the cell
    assert rgb["channel_order"] == "RGB" and rgb["depth"] is None
    assert depth["channel_order"] == "D" and depth["depth"] == {"encoding": "linear", "near_m": 0.3, "far_m": 1.0}
    assert np.array(rgb["intrinsics"]["K"]).shape == (3, 3) and {"R", "t"} <= set(rgb["camera"])
    assert m["observation"]["layout"]["order"] == ["proprio"] and m["observation"]["dim"] == bundle.obs_dim == READINGS
    assert m["policy"]["input"] == ["infeed_px", "infeed_px_depth", "wrist", "wrist_depth", "vector"]
    import onnxruntime as ort

    inputs = ort.InferenceSession(str(bundle_dir / "policy.onnx"), providers=["CPUExecutionProvider"]).get_inputs()
    assert [(i.name, i.shape, i.type) for i in inputs] == [
        ("infeed_px", ["batch", 84, 84, 3], "tensor(uint8)"), ("infeed_px_depth", ["batch", 84, 84, 1], "tensor(uint8)"),
        ("wrist", ["batch", 84, 84, 3], "tensor(uint8)"), ("wrist_depth", ["batch", 84, 84, 1], "tensor(uint8)"),
        ("vector", ["batch", READINGS], "tensor(float)")]


def test_the_spec_hash_covers_the_cameras_and_is_what_the_cell_describes(bundle_dir):
    m = load_bundle(bundle_dir).manifest
    text = spec_text(m["observation"], m["action"], m["control_hz"])
    assert ("\nimages 4\ninfeed_px 84 84 3 uint8 rgb\ninfeed_px_depth 84 84 1 uint8 depth 0.3 1\n"
            "wrist 84 84 3 uint8 rgb\nwrist_depth 84 84 1 uint8 depth 0.02 0.8\naction ee_delta 5\n") in text
    env = make_env(SCENARIO, obs_mode="pixels", observe_command=True)
    try:
        cell = env.unwrapped.feature_spec()
    finally:
        env.close()
    assert spec_hash(cell["observation"], cell["action"], cell["control_hz"]) == m["spec_hash"]  # a controller's own hash
    other_camera = {**m["observation"], "images": [{**m["observation"]["images"][0], "shape": [96, 96, 3]},
                                                   *m["observation"]["images"][1:]]}
    assert spec_hash(other_camera, m["action"], m["control_hz"]) != m["spec_hash"]
    without = {k: v for k, v in m["observation"].items() if k != "images"}  # the state text, as it always was
    assert "images" not in spec_text(without, m["action"], m["control_hz"])


def test_the_loader_refuses_a_manifest_whose_image_shape_is_not_the_graphs(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    _edit_manifest(copy, lambda m: m["observation"]["images"][0].update(shape=[64, 64, 3]))
    with pytest.raises(BundleError, match="does not match its spec_hash"):
        load_bundle(copy)

    def rehash(m):  # an edit that also forges the spec hash: the graph still disagrees
        m["spec_hash"] = spec_hash(m["observation"], m["action"], m["control_hz"])

    _edit_manifest(copy, rehash)
    for backend in ("onnx", "torchscript"):
        with pytest.raises(BundleError, match=r"takes input 'infeed_px' as uint8 \(B, 84, 84, 3\); the manifest says uint8 \(B, 64, 64, 3\)"):
            load_bundle(copy, backend=backend)


def test_a_pixel_bundle_runs_on_onnxruntime_without_torch(bundle_dir):
    """A cell PC needs only numpy + onnxruntime for a pixel bundle too."""
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from policies.bundle import load_bundle
        b = load_bundle({str(bundle_dir)!r})
        obs = {{image.key: np.zeros(image.shape, np.uint8) for image in b.images}}
        obs["proprio"] = np.zeros({READINGS}, np.float32)
        assert b.act(obs).shape == (5,)
        leaked = [m for m in ("torch", "stable_baselines3", "gymnasium", "sim") if m in sys.modules]
        assert not leaked, leaked
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_format_2_manifest_with_images_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    _edit_manifest(copy, lambda m: m.update(format_version=2))
    with pytest.raises(BundleError, match="image inputs.* need format_version 3"):
        load_bundle(copy)


def test_act_refuses_a_missing_image_a_wrong_dtype_or_shape_and_bad_readings(bundle_dir, recorded):
    bundle = load_bundle(bundle_dir)
    obs = {k: v[0] for k, v in recorded.items()}
    refused = {
        "the observation has no image 'infeed_px_depth'": {k: v for k, v in obs.items() if k != "infeed_px_depth"},
        "image 'infeed_px' must be a uint8 array, got float32": {**obs, "infeed_px": obs["infeed_px"].astype(np.float32)},
        r"image 'infeed_px' must be \(84, 84, 3\)": {**obs, "infeed_px": obs["infeed_px"][:, :80]},
        "images of different batch sizes": {**obs, "infeed_px": recorded["infeed_px"][:2]},
        rf"the vector \['proprio'\] must be \({READINGS},\)": {**obs, "proprio": obs["proprio"][:-1]},
        "the observation has no \\['proprio'\\]": {k: v for k, v in obs.items() if k != "proprio"},
        "non-finite reading": {**obs, "proprio": np.full(READINGS, np.nan, np.float32)},
        "takes camera images: give act.. an observation dict": obs["proprio"],
    }
    for message, bad in refused.items():
        with pytest.raises(BundleError, match=f"bundle 'bin-sort-px'.*{message}"):
            bundle.act(bad)
    with pytest.raises(BundleError, match="takes camera images"):
        bundle.act_batch_unchecked(obs["proprio"][None])
    images = {image.key: recorded[image.key][:4] for image in bundle.images}
    np.testing.assert_array_equal(bundle.act_batch_unchecked(recorded["proprio"][:4], images),
                                  bundle.act({**images, "proprio": recorded["proprio"][:4]}))


def test_load_policy_runs_the_bundle_as_it_runs_the_run_and_eval_asks_for_pixels(pixel_run, bundle_dir):
    from_run, from_bundle = load_policy(pixel_run), load_policy(bundle_dir)
    assert (from_run.obs_mode, from_bundle.obs_mode) == ("pixels", "pixels")
    env = make_env(SCENARIO, obs_mode="pixels", observe_command=True)
    worst = 0.0
    try:  # one closed-loop episode driven by the bundle; the run's policy acts on the same observations
        obs, _ = env.reset(seed=7)
        from_run.policy.reset(), from_bundle.policy.reset()
        done = False
        while not done:
            action = from_bundle.policy.act(obs)
            worst = max(worst, float(np.max(np.abs(action - from_run.policy.act(obs)))))
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    finally:
        env.close()
    assert worst <= PARITY_TOLERANCE
    for target in (pixel_run, bundle_dir):
        with pytest.raises(EvalError, match="needs --obs pixels"):
            evaluate(target, n=1)
    # Another cell's cameras and readings: the graph would fail inside, or with equal sizes act on other features.
    with pytest.raises(EvalError, match=r"acts on the observation and action of bin-sort \(spec [0-9a-f]{12}\); conveyor-pick "
                                        r"has others \(spec [0-9a-f]{12}\), so the bundle cannot drive it"):
        evaluate(bundle_dir, n=1, obs_mode="pixels", scenario="conveyor-pick")


def test_a_chunked_pixel_bundle_acts_with_the_first_action_of_its_chunk(tmp_path, recorded):
    env = make_env(SCENARIO, obs_mode="pixels", observe_command=True)
    try:
        image_keys, vector_keys = split_keys(env.observation_space)
        shapes = [env.observation_space[k].shape for k in image_keys]
        net = PixelPolicyNet(shapes, READINGS, 2 * 5, np.zeros(READINGS), np.ones(READINGS), channels=(8, 8, 8), hidden=(32,))
        out = export_pixel_bundle(net, tmp_path / "chunked", observation_space=env.observation_space,
                                  action_space=env.action_space, feature_spec=env.unwrapped.feature_spec(), chunk_length=2)
    finally:
        env.close()
    bundle = load_bundle(out)
    obs = {k: v[:3] for k, v in recorded.items()}
    chunks = bundle.act_chunk(obs)
    assert chunks.shape == (3, 2, 5) and np.array_equal(bundle.act(obs), chunks[:, 0])
    assert isinstance(load_policy(out).policy, ChunkedPolicy)


def test_the_bridge_serves_an_exported_pixel_bundle_to_the_twin_which_streams_its_frames(bundle_dir):
    """The real bundle behind a real server: every step of the twin's episode is answered from its frames."""
    from bridge_support import serving

    from genba.twin import TwinConfig, run_twin

    bundle = load_bundle(bundle_dir)
    with serving(bundle, inference="inline") as server:
        report = run_twin(TwinConfig(SCENARIO, server.endpoint, obs_mode="pixels", observe_command=True, episodes=1, speed=0.0,
                                     latency_budget=20.0,
                                     image_encodings=("png",)), log=lambda line: None)
    assert report.control_steps > 0 and report.step_status == {"ok": report.control_steps}
    assert report.episode_steps == [report.control_steps]
