"""The digital twin: a PyBullet cell driven through the bridge (server in its own process)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from twin_support import ENV, ROOT, bridge_server, clone_reach_bundle

from genba.twin import Faults, TwinConfig, TwinError, run_twin
from scenarios import load_scenario

EPISODES = 30
REACH = load_scenario("reach")
REACH_HZ, REACH_STEPS = REACH.physics.control_hz, REACH.max_episode_steps


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory):
    """A quickly cloned Reach policy (BC on the scripted expert, no DAgger): succeeds on some episodes only."""
    return clone_reach_bundle(tmp_path_factory.mktemp("reach"), demo_episodes=30, iterations=200, eval_episodes=5)


@pytest.fixture(scope="module")
def server(reach_bundle):
    with bridge_server(reach_bundle) as endpoint:
        yield endpoint


def genba(*args):
    result = subprocess.run([sys.executable, "-m", "genba", *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_twin_success_rate_through_the_bridge_matches_genba_eval(reach_bundle, server, tmp_path):
    genba("bridge", "twin", "reach", "--connect", server, "--episodes", str(EPISODES),
          "--speed", "0", "--json", str(tmp_path / "twin.json"))
    genba("eval", str(reach_bundle), "-n", str(EPISODES), "--json", str(tmp_path / "eval.json"))
    twin = json.loads((tmp_path / "twin.json").read_text())
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    evaluation = evaluation.get("result", evaluation)
    low, high = evaluation["success_ci95"]
    assert low <= twin["success_rate"] <= high, (twin["success_rate"], evaluation)
    assert 0 < twin["successes"] < EPISODES  # an informative comparison, not 0% = 0% or 100% = 100%
    assert twin["step_status"] == {"ok": twin["control_steps"]} and twin["deadline_misses"] == 0
    # The default 250 Hz servo rate, rounded to a whole number of cycles per control period.
    assert twin["holds"] == 0 and twin["servo_hz"] == round(250 / REACH_HZ) * REACH_HZ


def test_lost_replies_hold_the_robot_and_are_reported(reach_bundle, server):
    report = run_twin(TwinConfig("reach", server, episodes=2, speed=0, faults=Faults(drop_rate=1.0)),
                      log=lambda line: None)
    steps = 2 * REACH_STEPS  # both episodes run to the step limit
    assert report.successes == 0 and report.control_steps == steps
    assert report.step_status == {"dropped": steps} and report.faults["dropped"] == steps
    # No setpoint ever came, so the servo pipeline stood the robot still from the start (as a controller does
    # before its first setpoint): no watchdog hold, since nothing was moving, and every step was the standstill.
    assert report.holds == 0 and report.safety_interventions["hold"] == 0
    assert report.steps_changed_by_safety == report.steps_without_action == steps
    assert f"{steps} of {steps} steps changed by them or held ({steps} with no action from the policy)" in report.lines()[2]


def test_latency_beyond_the_budget_sends_nothing_and_counts_misses(reach_bundle, server):
    # The budget is half a control period (25 ms at reach's 20 Hz); 30 ms of injected latency exceeds it every time.
    assert 30.0 > 1000 / REACH_HZ / 2
    report = run_twin(TwinConfig("reach", server, episodes=1, speed=0, faults=Faults(latency_ms=30.0)),
                      log=lambda line: None)
    assert report.step_status == {"deadline": REACH_STEPS} and report.deadline_misses == REACH_STEPS
    assert report.round_trip["count"] == 0 and report.steps_changed_by_safety == REACH_STEPS


def test_replies_that_stop_mid_episode_hold_the_robot_within_two_servo_cycles(reach_bundle, server):
    report = run_twin(TwinConfig("reach", server, episodes=1, speed=0, faults=Faults(drop_rate=0.5, seed=3)),
                      log=lambda line: None)
    steps = report.episode_steps[0]
    # The fault generator's draws, replayed: one per answered request (no jitter is drawn).
    rng = np.random.default_rng(3)
    dropped = [bool(rng.random() < 0.5) for _ in range(steps)]
    assert report.step_status == {"ok": steps - sum(dropped), "dropped": sum(dropped)}
    # A dropped reply leaves a whole control period (12 servo cycles) without a fresh setpoint: each run of drops
    # after a served step starts one hold (on the 2nd missed cycle), released by the next reply. Drops before the
    # first served step leave the robot standing, as it stood.
    runs_after_motion = sum(1 for i in range(1, steps) if dropped[i] and not dropped[i - 1])
    assert runs_after_motion >= 3
    assert report.holds == runs_after_motion and report.safety_interventions["hold"] == runs_after_motion


def test_twin_runs_in_real_time(reach_bundle, server):
    report = run_twin(TwinConfig("reach", server, episodes=3, seed=3, speed=1.0), log=lambda line: None)
    # Each episode's first step goes out at once; every later one waits for its control period.
    assert report.wall_s >= 0.95 * (report.control_steps - report.episodes) / REACH_HZ
    assert report.control_steps - report.episodes >= 5  # enough paced steps for the bound to mean something
    assert report.step_status == {"ok": report.control_steps}


def test_twin_refuses_a_bundle_for_another_cell(reach_bundle, server):
    # The served bundles' arms, and the flags that set what the twin sends (a pixel preset trained on the GP7 met a
    # default Panda twin with no word on --robot).
    with pytest.raises(TwinError, match=r"serves no bundle for conveyor-pick with the panda: .*SPEC_MISMATCH.*served: 'reach-bc' "
                                        r"\(panda, spec .*the twin sends the state observation of its panda; --robot and --obs choose them"):
        run_twin(TwinConfig("conveyor-pick", server, episodes=1, speed=0), log=lambda line: None)
