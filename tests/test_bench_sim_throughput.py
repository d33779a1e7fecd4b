"""bench/sim_throughput.py's raw side replays the very world the env stepped, so its ratio compares the same physics."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pybullet as pb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sim_throughput  # noqa: E402

import sim  # noqa: E402,F401  (registers the envs)


def world(env) -> tuple:
    """Every body's pose and the arm's joint positions, bit for bit."""
    cid = env.sim.cid
    poses = tuple(pb.getBasePositionAndOrientation(b, physicsClientId=cid) for b in range(pb.getNumBodies(physicsClientId=cid)))
    return poses, tuple(s[0] for s in pb.getJointStates(env.robot.body, env.robot.arm_ids, physicsClientId=cid))


@pytest.mark.parametrize("env_id, steps", [("genba/ReachGP7-v0", 300), ("genba/ConveyorPick-v0", 400)])
def test_the_raw_replay_ends_in_the_same_world_as_the_env_across_resets(env_id, steps):
    env = gym.make(env_id).unwrapped
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, env.action_space.shape[0])).astype(np.float32)
        env.reset(seed=0)
        recorder = sim_throughput.Recorder(env)
        sim_throughput.time_env(env, actions, recorder)
        stepped = world(env)
        assert sum(step[0] for step in recorder.steps) >= 1  # episodes ended and restarted inside the run
        env.reset(seed=0)
        sim_throughput.time_raw(env, recorder.steps, env.scenario.physics.substeps)
        # conveyor-pick draws each episode's belt speed: the replay must drive the belt as the reset did.
        assert world(env) == stepped
    finally:
        env.close()
