"""The twin with --obs pixels: it streams the cell's rendered camera images with each step to a pixel bundle.

The bundle is the toy pixel policy (genba/pixel_toy.py) built from the cell's own pixels description, served
by a real server thread; the twin runs in this process (run_twin) or as `genba bridge twin` in a child.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bridge_support import serving
from twin_support import ENV, ROOT

import sim
from genba.pixel_toy import MeanPixelPolicy
from genba.twin import TwinConfig, TwinError, run_twin
from policies.evaluate import EVAL_SEED_OFFSET

SCENARIO = "reach"  # a goal cell with an 84x84 RGB-D `use: [pixels]` camera: the vector is proprio + goals


@pytest.fixture(scope="module")
def cell():
    """The cell's pixels description and its first observation of episode 0 (seeded as the twin seeds it)."""
    env = sim.make_env(SCENARIO, obs_mode="pixels")
    try:
        spec = env.unwrapped.feature_spec()
        first, _ = env.reset(seed=EVAL_SEED_OFFSET + 0)
    finally:
        env.close()
    return spec, first


@pytest.mark.parametrize("encodings", [("raw",), ("png",)])
def test_the_twin_streams_its_rendered_frames_with_each_step(cell, encodings):
    spec, first = cell
    policy = MeanPixelPolicy(spec, record_frames=1)
    keys = [i["key"] for i in policy.images]
    assert keys == ["table_top", "table_top_depth"]
    with serving(policy, inference="inline") as server:
        report = run_twin(TwinConfig(SCENARIO, server.endpoint, obs_mode="pixels", episodes=1, speed=0.0, latency_budget=20.0,
                                     image_encodings=encodings), log=lambda line: None)
    assert report.step_status == {"ok": report.control_steps} and report.control_steps == 40
    assert policy.batches == [1] * 40
    # The first step's frames are the env's first render, bit for bit (raw and PNG are lossless).
    for key in keys:
        np.testing.assert_array_equal(policy.frames[0][key], first[key])


def test_the_twin_refuses_a_bundle_whose_cameras_differ_from_the_cells(cell):
    spec, _ = cell
    other = json.loads(json.dumps(spec))
    other["observation"]["images"][0]["shape"] = [64, 64, 3]  # same vector, another camera: the spec hash covers cameras
    with serving(MeanPixelPolicy(other), inference="inline") as server:
        with pytest.raises(TwinError, match=r"serves no bundle for reach.*SPEC_MISMATCH"):
            run_twin(TwinConfig(SCENARIO, server.endpoint, obs_mode="pixels", episodes=1, speed=0.0), log=lambda line: None)


def test_genba_bridge_twin_obs_pixels_offers_the_encodings_it_is_given(cell, tmp_path):
    spec, first = cell
    policy = MeanPixelPolicy(spec, record_frames=1)
    with serving(policy, inference="inline") as server:
        proc = subprocess.run(
            [sys.executable, "-m", "genba", "bridge", "twin", SCENARIO, "--connect", server.endpoint, "--obs", "pixels",
             "--image-encodings", "jpeg,png", "--episodes", "1", "--speed", "0", "--latency-budget", "20",
             "--json", str(tmp_path / "twin.json")], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "twin.json").read_text())
    assert report["step_status"] == {"ok": report["control_steps"]} and len(policy.batches) == report["control_steps"]
    # Colour went JPEG (close to the render, not equal to it), depth PNG (exact): never JPEG.
    rgb, depth = policy.frames[0]["table_top"], policy.frames[0]["table_top_depth"]
    assert not np.array_equal(rgb, first["table_top"]) and np.abs(rgb.astype(int) - first["table_top"]).mean() < 3.0
    np.testing.assert_array_equal(depth, first["table_top_depth"])
    bad = subprocess.run([sys.executable, "-m", "genba", "bridge", "twin", SCENARIO, "--connect", "tcp://127.0.0.1:9",
                          "--obs", "pixels", "--image-encodings", "webp"], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=120)
    assert bad.returncode != 0 and "--image-encodings 'webp': name one or more of raw, png, jpeg" in bad.stderr
