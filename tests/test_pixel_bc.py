"""Pixel students: the network learns where things are in an image, augmentation leaves depth alone,
and a teacher-student run on a real cell trains, checkpoints every round and resumes."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from policies.config import ConfigError, resolve_config
from policies.envs import EnvError, make_env, make_expert
from policies.pixel_bc import Fitter, student_envs
from policies.pixel_collect import Collector
from policies.pixel_data import PixelData, record_pixels
from policies.pixel_net import GridMeans, PixelNetError, PixelPolicyNet, augment, camera_groups, colour_channels
from policies.train import train
from sim.simulator import Lighting


def _square_images(rng: np.random.Generator, n: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Grey images with a bright 4x4 square at a random place; the label is its centre in [-1, 1]."""
    images = np.full((n, size, size, 3), 60, np.uint8)
    corners = rng.integers(0, size - 4, (n, 2))
    for image, (row, col) in zip(images, corners):
        image[row:row + 4, col:col + 4] = 230
    centre = (corners + 1.5) / (size - 1) * 2 - 1  # (row, col) -> [-1, 1]
    return images, centre[:, ::-1].astype(np.float32)  # (x, y)


def test_the_student_learns_where_a_part_is_in_the_image():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    images, labels = _square_images(rng, 2000)
    vectors = np.zeros((len(images), 2), np.float32)
    data = PixelData({"cam": images}, vectors, labels, np.arange(len(images), dtype=np.int32),
                     np.ones(len(images), bool), np.zeros((len(images), 0), np.float32))
    cfg = resolve_config("toy-target", "bc", {"bc": {"batch_size": 64, "learning_rate": 3e-3, "augment_shift": 0,
                                                     "augment_brightness": 0.0, "augment_contrast": 0.0}})
    net = PixelPolicyNet([images.shape[1:]], 2, 2, np.zeros(2), np.ones(2), channels=(16, 16, 16), hidden=(64,))
    fitter = Fitter(net, cfg, "cpu")
    test_images, test_labels = _square_images(np.random.default_rng(1), 200)
    with torch.inference_mode():
        before = net(torch.from_numpy(test_images), torch.zeros(200, 2)).numpy()
    fitter.fit(data, 600, progress=False, desc="fit")
    with torch.inference_mode():
        after = net(torch.from_numpy(test_images), torch.zeros(200, 2)).numpy()
    err_before, err_after = np.abs(before - test_labels).mean(), np.abs(after - test_labels).mean()
    # 0.08 of the half-width is about 1.2 pixels of a 32-pixel image
    assert err_after < 0.08 < err_before, (err_before, err_after)


def test_the_policy_is_the_moving_average_of_the_weights_and_a_resumed_fitter_keeps_both():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    images, labels = _square_images(rng, 64)
    data = PixelData({"cam": images}, np.zeros((64, 2), np.float32), labels, np.arange(64, dtype=np.int32),
                     np.ones(64, bool), np.zeros((64, 0), np.float32))
    cfg = resolve_config("toy-target", "bc", {"bc": {"batch_size": 16, "average": 0.9}})
    net = PixelPolicyNet([images.shape[1:]], 2, 2, np.zeros(2), np.ones(2), channels=(8, 8, 8), hidden=(16,))
    fitter = Fitter(net, cfg, "cpu")
    expected = [w.detach().clone() for w in net.parameters()]
    for t in range(12):  # one gradient step at a time: the average by hand, decay warmed up
        fitter.fit(data, 1, progress=False, desc="fit")
        decay = min(0.9, (1 + t + 1) / (10 + t + 1))
        expected = [decay * e + (1 - decay) * w.detach() for e, w in zip(expected, net.parameters())]
    for e, a, w in zip(expected, fitter.policy.parameters(), net.parameters()):
        torch.testing.assert_close(a, e)
    assert any(not torch.equal(a, w) for a, w in zip(fitter.policy.parameters(), net.parameters()))

    # Resuming builds the network from the snapshot (the policy's weights); the checkpoint's state brings back the rest.
    resumed_net = PixelPolicyNet.from_config(fitter.policy.config())
    resumed_net.load_state_dict(fitter.policy.state_dict())
    resumed = Fitter(resumed_net, cfg, "cpu")
    resumed.restore(fitter.state())
    for a, b in zip(resumed.policy.parameters(), fitter.policy.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.net.parameters(), net.parameters()):
        assert torch.equal(a, b)
    plain = Fitter(PixelPolicyNet.from_config(net.config()), resolve_config("toy-target", "bc", {"bc": {"average": 0.0}}), "cpu")
    assert plain.policy is plain.net


def test_augmentation_shifts_the_image_and_leaves_depth_values_alone():
    pixels = torch.zeros(16, 4, 16, 16)
    pixels[:, :, 8, 8] = 1.0  # one bright pixel in RGB and in depth, 16 times
    colour = colour_channels([(16, 16, 3), (16, 16, 1)])
    assert colour.tolist() == [True, True, True, False]
    shifted = augment(pixels, torch.Generator().manual_seed(3), shift=2, brightness=0.0, contrast=0.0, colour=colour)
    places = {tuple(p) for p in (shifted[:, 0] == 1.0).nonzero()[:, 1:].tolist()}
    assert len(places) > 1 and all(abs(r - 8) <= 2 and abs(c - 8) <= 2 for r, c in places)
    assert torch.equal(shifted[:, 3] == 1.0, shifted[:, 0] == 1.0)  # depth moves with the image
    jittered = augment(pixels, torch.Generator().manual_seed(4), shift=0, brightness=0.3, contrast=0.3, colour=colour)
    assert torch.equal(jittered[:, 3], pixels[:, 3])  # depth keeps its metric meaning
    assert not torch.equal(jittered[:, :3], pixels[:, :3])
    assert torch.equal(jittered[:, 0], jittered[:, 1])  # brightness and contrast keep a grey pixel grey
    tinted = augment(pixels, torch.Generator().manual_seed(5), shift=0, brightness=0.0, contrast=0.0, colour=colour, tint=0.2)
    assert torch.equal(tinted[:, 3], pixels[:, 3])
    gains = tinted[:, :3, 8, 8] / pixels[:, :3, 8, 8].clamp(min=1e-6)  # the bright pixel, per colour channel
    assert not torch.equal(gains[:, 0], gains[:, 1]) and bool(((gains > 0.79) & (gains <= 1.0)).all())


def test_grid_features_tell_what_is_where_which_maxima_cannot():
    """The same bright spot in two places: the maxima are equal, the grid means say which cell it is in."""
    maps = torch.zeros(2, 1, 17, 17)
    maps[0, 0, 2, 3] = 1.0  # top-left cell (rows and columns 1-5; the outer row and column are left out)
    maps[1, 0, 14, 14] = 1.0  # bottom-right cell (11-15)
    assert torch.equal(maps.amax(dim=(2, 3))[0], maps.amax(dim=(2, 3))[1])
    cells = GridMeans(17, 17, 3)(maps).reshape(2, 3, 3)
    assert cells[0, 0, 0] == pytest.approx(1 / 25) and cells[1, 2, 2] == pytest.approx(1 / 25)
    assert int((cells > 0).sum()) == 2
    net = PixelPolicyNet([(84, 84, 3)], 4, 2, np.zeros(4), np.ones(4), channels=(8, 8, 8), hidden=(16,), grid=3)
    assert net.head[0].in_features == (3 + 9) * 8 + 4  # per channel: keypoint x, y, maximum, 9 cells; then the readings
    rebuilt = PixelPolicyNet.from_config(net.config())
    rebuilt.load_state_dict(net.state_dict())
    image, vector = torch.randint(0, 256, (2, 84, 84, 3), dtype=torch.uint8), torch.randn(2, 4)
    assert torch.equal(rebuilt(image, vector), net(image, vector))
    with pytest.raises(PixelNetError, match="grid of 20 x 20 cells does not fit"):
        PixelPolicyNet([(84, 84, 3)], 4, 2, np.zeros(4), np.ones(4), grid=20)
    with pytest.raises(ConfigError, match="bc.grid_features must be an integer >= 0"):
        resolve_config("bin-sort", "bc", {"obs_mode": "pixels", "bc": {"grid_features": -1}})


def test_each_camera_has_its_own_encoder_and_its_images_must_be_of_one_size():
    assert camera_groups(["wrist", "top", "wrist_depth", "top_depth"]) == [[0, 2], [1, 3]]
    net = PixelPolicyNet([(84, 84, 3), (64, 64, 3), (84, 84, 1)], 4, 2, np.zeros(4), np.ones(4), groups=[[0, 2], [1]])
    assert len(net.encoders) == 2
    assert net(torch.zeros(2, 84, 84, 3, dtype=torch.uint8), torch.zeros(2, 64, 64, 3, dtype=torch.uint8),
               torch.zeros(2, 84, 84, 1, dtype=torch.uint8), torch.zeros(2, 4)).shape == (2, 2)
    with pytest.raises(PixelNetError, match="one size"):
        PixelPolicyNet([(84, 84, 3), (64, 64, 1)], 4, 2, np.zeros(4), np.ones(4))
    with pytest.raises(PixelNetError, match="each of the 2 image inputs once"):
        PixelPolicyNet([(84, 84, 3), (84, 84, 1)], 4, 2, np.zeros(4), np.ones(4), groups=[[0]])


def test_pixels_needs_behaviour_cloning_and_by_obs_names_known_modes(tmp_path):
    with pytest.raises(ConfigError, match="use --algo bc"):
        resolve_config("bin-sort", "sac", {"obs_mode": "pixels"})
    preset = tmp_path / "p.yaml"
    preset.write_text("algos:\n  bc:\n    bc: {iterations: 10}\n    by_obs:\n      pixel: {bc: {iterations: 5}}\n")
    with pytest.raises(ConfigError, match="unknown observation mode 'pixel'"):
        resolve_config("bin-sort", "bc", {}, preset_file=preset)
    preset.write_text("algos:\n  bc:\n    bc: {iterations: 10}\n    by_obs:\n      pixels: {bc: {iterations: 5}}\n")
    assert resolve_config("bin-sort", "bc", {}, preset_file=preset).bc.iterations == 10
    assert resolve_config("bin-sort", "bc", {"obs_mode": "pixels"}, preset_file=preset).bc.iterations == 5


TINY = {"seed": 0, "eval_episodes": 1, "obs_mode": "pixels",
        "bc": {"demo_episodes": 2, "iterations": 5, "round_iterations": 5, "batch_size": 8, "rounds": 2, "round_episodes": 1,
               "round_driver": "expert", "collect_workers": 2}}  # the workers record expert rounds ahead


def test_worker_processes_record_the_episodes_one_process_records():
    env = make_env("bin-sort", obs_mode="pixels")
    try:
        alone = record_pixels(env, None, make_expert(env), 3, 100, noise=0.2)
    finally:
        env.close()
    collector = Collector("bin-sort", None, workers=2)
    try:
        split = collector.record(3, 100, noise=0.2).result()
    finally:
        collector.close()
    # Episodes 0-1 went to one worker, 2 to the other. The same episodes (seeds and noise by episode index):
    # bit for bit where the env had run the same episodes before; episode 2 ran on a fresh env, which differs
    # from one that ran two episodes in PyBullet's solver warm start: in the last digits at first, and such a
    # difference may move a grasp or a release by a control step later on.
    assert len(alone) > 100 and list(alone.successes) == list(split.successes)
    first_two, split_two = alone.episode < 2, split.episode < 2
    np.testing.assert_array_equal(alone.episode[first_two], split.episode[split_two])
    for name in ("vectors", "actions", "privileged"):
        np.testing.assert_array_equal(getattr(alone, name)[first_two], getattr(split, name)[split_two])
    for key, frames in alone.images.items():
        np.testing.assert_array_equal(frames[first_two], split.images[key][split_two])
    last, split_last = alone.actions[~first_two], split.actions[~split_two]
    assert abs(len(last) - len(split_last)) <= 3 and len(last) > 50
    np.testing.assert_allclose(last[:50], split_last[:50], atol=0.1)


def test_a_pixel_run_checkpoints_every_round_and_resumes_after_the_last_complete_one(tmp_path):
    cfg = resolve_config("bin-sort", "bc", TINY)
    out = tmp_path / "run"
    start, evaluated_at = time.monotonic(), []
    summary = train(cfg, out, progress=False, on_eval=lambda record: evaluated_at.append(time.monotonic()))
    assert summary["obs_mode"] == "pixels" and summary["num_timesteps"] > 0
    # The first evaluation's wall time counts the workers' start and the demonstrations too (all but train()'s set-up).
    first = json.loads((out / "eval.jsonl").read_text().splitlines()[0])
    assert first["wall_s"] >= evaluated_at[0] - start - 1.5
    rounds = [json.loads(line)["round"] for line in (out / "eval.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2]
    assert (out / "best" / "pixel_policy.pt").is_file() and (out / "final" / "pixel_policy.pt").is_file()
    kept = PixelData.load(out / "data" / "round_0")
    assert kept.images["infeed_px"].dtype == np.uint8 and len(kept) == len(kept.actions) > 0

    # A crash during round 2 after its evaluation was logged: its checkpoint (and the summary) never completed.
    # Resume redoes round 2 only, from round 1's state, and its evaluation is not logged twice.
    shutil.rmtree(out / "checkpoints" / "round_2")
    (out / "summary.json").unlink()
    # And one between atomic_dir's two renames: round 1's data and checkpoint only in their previous versions.
    for d in (out / "data", out / "checkpoints"):
        (d / "round_1").rename(d / ".old-round_1.1")
    resumed = train(None, out, resume=True, progress=False)
    rounds = [json.loads(line)["round"] for line in (out / "eval.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2]
    assert resumed["num_timesteps"] == summary["num_timesteps"]  # the same data again, not recorded twice
    assert "resumes" in (out / "meta.json").read_text()
    # Nor in TensorBoard: the lost round 2's evaluation is hidden, the redone one shown (at the fit iterations done).
    tb = EventAccumulator(str(out / "tb" / "pixel_bc"))
    tb.Reload()
    assert [(e.step, e.value) for e in tb.Scalars("eval/success_rate")] == \
        [(5 * (r + 1), pytest.approx(json.loads(line)["success_rate"])) for r, line in enumerate((out / "eval.jsonl").read_text().splitlines())]


def test_student_driven_rounds_go_where_the_student_goes_with_the_experts_labels(tmp_path):
    """bc.round_driver learner (DAgger): a round's episodes are driven by the student and labelled by the expert."""
    cfg = resolve_config("bin-sort", "bc", {**TINY, "bc": {**TINY["bc"], "rounds": 1, "round_driver": "learner", "collect_workers": 1}})
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    demos, student = PixelData.load(out / "data" / "round_0"), PixelData.load(out / "data" / "round_1")
    env = make_env("bin-sort")
    limit = env.unwrapped.scenario.max_episode_steps
    features = env.unwrapped.task.features()  # the privileged targets: the task's own features, in order
    env.close()
    # The expert sorted its 2 demonstrations' parts; a student fitted for 5 steps never gets one sorted.
    assert demos.successes.all() and len(demos) < 2 * limit
    assert not student.successes.any() and len(student) == limit
    # Every label still heads for the part, as the expert's funnel does: over the tote toward the part it has
    # not grasped (an untrained student's own actions would point anywhere).
    names, sizes = [f[0] for f in features], [f[1] for f in features]
    start = int(np.sum(sizes[:names.index("part_minus_tool")]))
    held = student.privileged[:, int(np.sum(sizes[:names.index("part_held")]))]
    to_part = student.privileged[:, start:start + 2]
    far = (np.linalg.norm(to_part, axis=1) > 0.05) & (held == 0)
    assert far.sum() > 50
    assert np.all(np.sum(student.actions[far, :2] * to_part[far], axis=1) > 0)


def test_record_randomization_changes_the_lights_of_the_recordings_and_not_of_the_evaluations(tmp_path):
    """bc.record_randomization: the student's demonstrations are recorded under the profile's lights (the same
    episodes otherwise), and its evaluations see the cell's own light."""
    cfg = resolve_config("bin-sort", "bc", {**TINY, "bc": {**TINY["bc"], "rounds": 0, "collect_workers": 1,
                                                            "record_randomization": "lighting"}})
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    lit = PixelData.load(out / "data" / "round_0")
    env = make_env("bin-sort", obs_mode="pixels", observe_command=cfg.observe_command)
    try:
        plain = record_pixels(env, None, make_expert(env), cfg.bc.demo_episodes, cfg.seed * 100_000, cfg.bc.demo_noise)
    finally:
        env.close()
    # The lights draw from a generator of their own: the same parts, so the expert did the same.
    np.testing.assert_array_equal(lit.actions, plain.actions)
    np.testing.assert_array_equal(lit.vectors, plain.vectors)
    for key, frames in plain.images.items():
        colour = frames.shape[-1] == 3
        if colour:  # every episode under its own light: whole frames brighter or darker, tinted
            shift = np.abs(lit.images[key].astype(float).mean(axis=(1, 2)) - frames.astype(float).mean(axis=(1, 2)))
            assert (shift.max(axis=1) > 3).mean() > 0.9, key

    # The student is evaluated in the cell's own light, episode after episode; its recordings see others.
    evaluated, recorded, _ = student_envs(cfg)
    try:
        lights = {"evaluated": set(), "recorded": set()}
        for seed in range(3):
            for name, env in (("evaluated", evaluated), ("recorded", recorded)):
                env.reset(seed=seed)
                lights[name].add(env.unwrapped.sim.lighting)
    finally:
        evaluated.close()
        recorded.close()
    assert lights["evaluated"] == {Lighting()} and len(lights["recorded"]) == 3


def test_record_randomization_is_for_pixel_students_and_a_bad_profile_is_named(tmp_path):
    with pytest.raises(ConfigError, match="record_randomization .*obs_mode pixels"):
        resolve_config("bin-sort", "bc", {"bc": {"record_randomization": "lighting"}})
    cfg = resolve_config("bin-sort", "bc", {**TINY, "bc": {**TINY["bc"], "record_randomization": "lightning"}})
    with pytest.raises(EnvError, match="unknown randomisation profile 'lightning'.*did you mean 'lighting'"):
        train(cfg, tmp_path / "run", progress=False)
