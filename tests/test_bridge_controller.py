"""Controller runtime: watchdog and servo pipeline units, then a server killed and restarted mid-session."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from bridge_support import wait_for

from bridge import gantry
from bridge.client import BridgeClient, ClientConfig
from bridge.controller import Controller, ControllerConfig, joint_delta_mapper
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter
from bridge.servo import ServoPipeline
from bridge.watchdog import ServoState, Watchdog
from genba.server_process import ServerProcess
from policies.bundle_format import read_manifest

ROOT = Path(__file__).resolve().parents[1]
MS = 1_000_000


def test_watchdog_coasts_one_cycle_then_holds_on_the_second():
    dog = Watchdog(hold_after=2, drop_after_s=1.0)
    dog.fed(0)
    assert dog.tick(True, 1 * MS) is ServoState.RUN
    assert dog.tick(False, 2 * MS) is ServoState.COAST
    assert dog.tick(False, 3 * MS) is ServoState.HOLD and dog.missed == 2
    assert dog.tick(False, 4 * MS) is ServoState.HOLD
    assert dog.fed(5 * MS) is True  # ends the hold
    assert (dog.state, dog.missed) == (ServoState.RUN, 0)
    assert dog.fed(6 * MS) is False


def test_watchdog_requests_a_session_drop_once_after_a_second_of_silence():
    dog = Watchdog(hold_after=2, drop_after_s=1.0)
    dog.fed(0)
    drops = []
    for cycle in range(1, 300):  # 4 ms cycles, 1.2 s
        dog.tick(False, cycle * 4 * MS)
        drops += [cycle] if dog.drop_now else []
    assert drops == [250]  # 250 * 4 ms = 1.0 s
    assert dog.drop_requested
    dog.fed(300 * 4 * MS)
    assert not dog.drop_requested


def test_servo_pipeline_interpolates_linearly_and_stops_at_the_target():
    # Two joints with limits far beyond these moves: no clamp acts, the values are the interpolation's.
    limits = SafetyLimits.from_robot_spec({
        "joint_names": ["a", "b"], "joint_lower": [-5.0, -5.0], "joint_upper": [5.0, 5.0], "joint_max_velocity": [1e3] * 2,
        "joint_max_acceleration": [1e9] * 2, "max_relative_target": [5.0] * 2, "max_ee_speed": 1.0,
        "workspace_low": [-1.0] * 3, "workspace_high": [1.0] * 3})
    servo = ServoPipeline(SafetyFilter(limits, 0.002, np.array([0.0, 1.0])), Watchdog(hold_after=2))
    servo.feed(np.array([1.0, 0.0]), start_ns=0, end_ns=8 * MS)
    np.testing.assert_array_equal(servo.cycle(-MS), [0.0, 1.0])  # not started yet: the start
    np.testing.assert_array_equal(servo.cycle(2 * MS), [0.25, 0.75])
    np.testing.assert_array_equal(servo.cycle(8 * MS), [1.0, 0.0])
    np.testing.assert_array_equal(servo.cycle(20 * MS), [1.0, 0.0])  # ended: stays at the last command
    assert servo.state is ServoState.COAST and not servo.changed


def test_joint_delta_mapper_adds_scaled_actions_to_the_previous_target():
    to_target = joint_delta_mapper(np.array([0.025, 0.025, 0.025]))
    np.testing.assert_array_equal(to_target(np.array([1.0, -0.5, 0.0], dtype=np.float32), np.array([0.0, 0.0, 0.3])),
                                  [0.025, -0.0125, 0.3])


@pytest.mark.parametrize("hz", [100.0, 2000.0])
def test_servo_rate_outside_125_to_1000_hz_is_refused(hz):
    with pytest.raises(ValueError, match="outside 125-1000 Hz"):
        ControllerConfig(servo_hz=hz)


# ------------------------------------------------------------------ kill and restart the server


def start_server(bundle_dir, bind="tcp://127.0.0.1:*") -> ServerProcess:
    return ServerProcess([bundle_dir], "--bind", bind, "--telemetry", "off", "--device", "cpu")


def test_server_killed_mid_session_holds_within_two_cycles_then_reconnects(bundle_dir):
    manifest = read_manifest(bundle_dir)
    server = start_server(bundle_dir)
    endpoint = server.endpoint
    robot = gantry.SimulatedGantry(goal=np.array([0.3, 0.2, 0.1]))
    client = BridgeClient(ClientConfig(endpoint, manifest["name"], manifest["spec_hash"], robot={"model": "gantry-3", "joint_names": ["x", "y", "z"]}))
    controller = Controller(
        robot, client, SafetyLimits.from_robot_spec(gantry.robot_spec()), joint_delta_mapper(gantry.action_scale()),
        ControllerConfig(servo_hz=250.0), gantry.forward_kinematics,
    )
    restarted = None
    try:
        controller.start()
        assert wait_for(lambda: controller.report.actions_applied >= 10, 10), "no actions before the kill"
        applied_before_kill = controller.report.actions_applied
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(5)
        assert wait_for(lambda: controller.events("hold"), 2), "watchdog never held"
        assert wait_for(lambda: controller.events("session_dropped"), 3), "session never dropped"
        hold = controller.events("hold")[0]
        dropped = controller.events("session_dropped")[0]
        commands_at_hold = len(robot.commands)
        assert wait_for(lambda: len(robot.commands) >= commands_at_hold + 100, 5)
        held = np.array(robot.commands[commands_at_hold + 60 : commands_at_hold + 100])  # after the deceleration
        restarted = start_server(bundle_dir, bind=endpoint)
        assert wait_for(lambda: controller.events("resumed"), 10), "never resumed after the restart"
        assert wait_for(lambda: controller.report.actions_applied >= applied_before_kill + 10, 10)
    finally:
        report = controller.stop()
        client.close()
        for proc in (server, restarted):
            if proc is not None:
                proc.stop()

    # Held within 2 servo cycles of the missing setpoint, reported, and counted by the safety layer.
    assert hold.detail == "no fresh setpoint for 2 servo cycles: decelerating to hold"
    assert report.safety["hold"] >= 1
    # The session was dropped 1 s after the last fresh setpoint, i.e. one control period (50 ms) plus
    # two servo cycles (8 ms) before the hold began, and then re-established.
    assert 1.0 - 0.058 - 0.05 <= dropped.t - hold.t <= 1.0 - 0.058 + 0.05
    # Re-established: once here; on a loaded machine (seen once in a fresh-clone CI) the restarted server's first replies
    # can come later than the 1 s silence limit, and the client drops and reconnects once more.
    reconnects = client.counts["reconnects"]
    assert 1 <= reconnects <= 2 and [kind for _, kind, _ in client.events].count("connected") == 1 + reconnects
    # While held, the robot was commanded to stand perfectly still.
    assert len(held) == 40 and np.all(held == held[0])
    # Motion resumed afterwards, and no safety limit had to intervene on the way.
    assert report.actions_applied >= applied_before_kill + 10
    assert report.safety["velocity"] == report.safety["acceleration"] == report.safety["position"] == 0
