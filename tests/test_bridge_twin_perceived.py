"""The twin with --obs perceived: it renders its camera and runs perception on the controller side, sends the
perceived state, and the state bundle on the server acts on it exactly as `genba eval --obs perceived` does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from twin_support import ENV, ROOT, bridge_server, clone_bundle

EPISODES = 4


@pytest.fixture(scope="module")
def bin_sort_bundle(tmp_path_factory):
    # A small clone of the bin-sort expert, fast to train, yet good enough not to run into anything: a clone of 12
    # demonstrations collided twice an episode and the safety layer changed its commands, which parts the twin from eval.
    return clone_bundle("bin-sort", tmp_path_factory.mktemp("bin-sort"), demo_episodes=20, iterations=1500, eval_episodes=2)


def genba(*args):
    result = subprocess.run([sys.executable, "-m", "genba", *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_twin_on_perceived_state_reproduces_eval_on_perceived_state(bin_sort_bundle, tmp_path):
    with bridge_server(bin_sort_bundle) as endpoint:
        # As fast as possible, a reply may take 5 control periods: on a loaded host (CI, a benchmark beside it) a
        # late reply would hold the robot, and the episode would part from eval's (the twin's own holds are
        # tested in test_bridge_twin.py).
        genba("bridge", "twin", "bin-sort", "--connect", endpoint, "--obs", "perceived", "--episodes", str(EPISODES),
              "--speed", "0", "--latency-budget", "5.0", "--json", str(tmp_path / "twin.json"))
    genba("eval", str(bin_sort_bundle), "-n", str(EPISODES), "--obs", "perceived", "--json", str(tmp_path / "eval.json"))
    twin = json.loads((tmp_path / "twin.json").read_text())
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert evaluation["obs_mode"] == "perceived"
    assert twin["step_status"] == {"ok": twin["control_steps"]} and twin["steps_changed_by_safety"] == 0
    # Same seeds, same renders, same perception, the policy's actions bit for bit: the same episodes, to the
    # last reward.
    assert twin["successes"] == evaluation["successes"]
    assert sum(twin["episode_steps"]) / EPISODES == pytest.approx(evaluation["mean_episode_steps"])
    assert sum(twin["episode_returns"]) / EPISODES == pytest.approx(evaluation["mean_return"], rel=1e-9)
