"""The digital twin: a PyBullet cell driven through the bridge (server in its own process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bridge.twin import Faults, TwinConfig, TwinError, run_twin

from twin_support import ENV, ROOT, bridge_server, clone_reach_bundle
EPISODES = 30


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory):
    """A quickly cloned Reach policy (BC on the scripted expert, no DAgger): succeeds on some episodes only."""
    return clone_reach_bundle(tmp_path_factory.mktemp("reach"), demo_episodes=30, iterations=200, eval_episodes=5)


@pytest.fixture(scope="module")
def server(reach_bundle):
    with bridge_server(reach_bundle) as endpoint:
        yield endpoint


def genba(*args):
    result = subprocess.run([sys.executable, "-m", "genba.cli", *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_twin_success_rate_through_the_bridge_matches_genba_eval(reach_bundle, server, tmp_path):
    genba("bridge", "twin", "reach", "--connect", server, "--bundle", str(reach_bundle), "--episodes", str(EPISODES),
          "--speed", "0", "--json", str(tmp_path / "twin.json"))
    genba("eval", str(reach_bundle), "-n", str(EPISODES), "--json", str(tmp_path / "eval.json"))
    twin = json.loads((tmp_path / "twin.json").read_text())
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    evaluation = evaluation.get("result", evaluation)
    low, high = evaluation["success_ci95"]
    assert low <= twin["success_rate"] <= high, (twin["success_rate"], evaluation)
    assert 0 < twin["successes"] < EPISODES  # an informative comparison, not 0% = 0% or 100% = 100%
    assert twin["step_status"] == {"ok": twin["control_steps"]} and twin["deadline_misses"] == 0
    assert twin["holds"] == 0 and twin["servo_hz"] == 250.0  # 10 servo cycles per 25 Hz control period


def test_lost_replies_hold_the_robot_and_are_reported(reach_bundle, server):
    report = run_twin(TwinConfig("reach", server, reach_bundle, episodes=2, speed=0, faults=Faults(drop_rate=1.0)),
                      log=lambda line: None)
    assert report.successes == 0 and report.control_steps == 100  # both episodes run to the 50-step limit
    assert report.step_status == {"dropped": 100} and report.faults["dropped"] == 100
    assert report.holds == 2 and report.safety_interventions["hold"] == 2  # one hold per episode, never released
    assert report.steps_changed_by_safety == 100


def test_latency_beyond_the_budget_sends_nothing_and_counts_misses(reach_bundle, server):
    # Reach runs at 25 Hz: the budget is half of 40 ms; 30 ms of injected latency exceeds it every time.
    report = run_twin(TwinConfig("reach", server, reach_bundle, episodes=1, speed=0, faults=Faults(latency_ms=30.0)),
                      log=lambda line: None)
    assert report.step_status == {"deadline": 50} and report.deadline_misses == 50
    assert report.round_trip["count"] == 0 and report.holds == 1


def test_twin_runs_in_real_time(reach_bundle, server):
    report = run_twin(TwinConfig("reach", server, reach_bundle, episodes=1, seed=3, speed=1.0), log=lambda line: None)
    assert report.wall_s >= 0.95 * report.control_steps / 25.0
    assert report.step_status == {"ok": report.control_steps}


def test_twin_refuses_a_bundle_for_another_cell(reach_bundle, server):
    with pytest.raises(TwinError, match="observes .* the cell gives .*: wrong scenario or robot"):
        run_twin(TwinConfig("conveyor-pick", server, reach_bundle, episodes=1, speed=0), log=lambda line: None)
