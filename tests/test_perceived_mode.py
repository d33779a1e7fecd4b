"""obs_mode "perceived": the state layout measured through the cell's camera; the expert works from it too."""

from __future__ import annotations

import numpy as np
import pytest
from episode_support import feature_slice

import sim
from sim.camera_pose import CameraError
from sim.experts import make_expert


@pytest.mark.parametrize("scenario, robot", [("conveyor-pick", "panda"), ("bin-sort", "gp7")])
def test_perceived_part_positions_agree_with_the_truth(scenario, robot):
    env = sim.make_env(scenario, robot=robot, obs_mode="perceived")
    expert = make_expert(env)
    errors = []
    try:
        for seed in (11, 12, 13):
            obs, _ = env.reset(seed=seed)
            expert.reset()
            for _ in range(120):
                estimate = env.task.observer.estimate
                if estimate is not None and not estimate.held and estimate.seen_at == env.sim.time:  # seen in this frame
                    seen = feature_slice(env, obs, "part_position")
                    truth = min(env.task.part_truth(), key=lambda p: np.linalg.norm(p["position"] - seen))
                    errors.append(np.linalg.norm(truth["position"] - seen))
                obs, _, terminated, truncated, _ = env.step(expert.act(obs))
                if terminated or truncated:
                    break
    finally:
        env.close()
    assert len(errors) >= 10 and np.percentile(errors, 95) < 0.005


@pytest.mark.parametrize("scenario, robot", [("conveyor-pick", "panda"), ("bin-sort", "gp7")])
def test_the_expert_succeeds_on_what_the_camera_sees(scenario, robot):
    env = sim.make_env(scenario, robot=robot, obs_mode="perceived")
    expert = make_expert(env)
    outcomes = []
    try:
        for seed in range(2):
            obs, info = env.reset(seed=2_000_000 + seed)
            expert.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                done = terminated or truncated
            outcomes.append(info["is_success"])
        assert env.detections is not None  # perception ran
    finally:
        env.close()
    assert outcomes == [True, True]


def test_perceived_mode_needs_a_perception_camera():
    with pytest.raises(CameraError, match=r"obs_mode 'perceived' needs a camera with `use: \[perception\]` in scenario 'reach'"):
        sim.make_env("reach", obs_mode="perceived")
