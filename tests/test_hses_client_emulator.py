"""HsesClient against HsesEmulator over real UDP on loopback, with the GP7 cell in PyBullet behind it.

The emulator runs as fast as possible (speed 0); every test gets its own emulator and client, closed
when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.hses import errors
from bridge.hses.client import HsesClient
from bridge.hses.packets import Command, Service
from bridge.hses.payloads import CartesianMotion, CycleMode, MoveCartesianData, PulseMotion, ResetKind
from bridge.hses.units import GP7_AXES, MoveSpeed
from genba.hses import EmulatorError, Faults, HsesEmulator
from genba.server_process import stop_process

ROOT = Path(__file__).resolve().parents[1]
DOWN = [math.pi, 0.0]  # Rx, Ry of a tool pointing straight down
TARGET_Q = np.array([0.3, 0.2, 0.1, 0.2, -0.5, 1.0])


@pytest.fixture
def emulator():
    with HsesEmulator("conveyor-pick", port=0, speed=0) as emu:
        yield emu
        assert emu.stats["crashed"] == 0


@pytest.fixture
def robot(emulator):
    with HsesClient(*emulator.address, timeout=1.0, retries=1) as client:
        yield client


@pytest.fixture
def paced_robot():
    """A client of an emulator paced at 4x real time: for tests that must see a move while it runs (as fast as
    possible, an idle host finishes a 6-s move before the next datagram is read)."""
    with HsesEmulator("conveyor-pick", port=0, speed=4.0) as emu:
        with HsesClient(*emu.address, timeout=1.0, retries=1) as client:
            yield emu, client
        assert emu.stats["crashed"] == 0


def sim_joints(emulator) -> np.ndarray:
    with emulator.lock:
        return emulator.motion.joints()


def wait_until_stopped(client, timeout_s: float = 20.0) -> None:
    """Poll the running bit until it drops."""
    deadline = time.monotonic() + timeout_s
    while client.read_status().running:
        assert time.monotonic() < deadline, "the move did not end"


def move_tool_down(robot, xyz, yaw=0.0):
    robot.move_cartesian(xyz, [*DOWN, yaw], MoveSpeed.joint_percent(50.0), motion=CartesianMotion.JOINT_ABSOLUTE)
    wait_until_stopped(robot)


# --- reads ------------------------------------------------------------------------------------------


def test_status_after_power_up(robot):
    status = robot.read_status()
    assert status.play and status.command_remote and status.continuous
    assert not (status.servo_on or status.running or status.alarm or status.teach or status.hold_command)


def test_positions_read_the_cell(emulator, robot):
    assert robot.read_position("pulse").axes[:6] == GP7_AXES.radians_to_pulses(sim_joints(emulator))
    # The GP7's home pose puts the tool straight down at (0.40, 0, 0.25) m in the base frame.
    position = robot.read_position("cartesian")
    assert position.frame == 16
    xyz, rotation = robot.read_tool_pose()
    assert xyz.tolist() == pytest.approx([0.40, 0.0, 0.25], abs=1e-3)
    assert abs(abs(rotation[0]) - math.pi) < 1e-3 and abs(rotation[1]) < 1e-3


def test_torque_reads_the_gravity_load(robot):
    torque = robot.read_torque()
    assert len(torque) == 8 and torque[6:] == (0, 0)
    # The arm holds its own weight on L and U; S turns about the vertical and carries none.
    assert abs(torque[1]) >= 2 and abs(torque[2]) >= 2 and torque[0] == 0


def test_servo_and_cycle_mode_show_in_the_status(robot):
    robot.servo(True)
    robot.cycle_mode(CycleMode.STEP)
    status = robot.read_status()
    assert status.servo_on and status.step and not status.continuous
    robot.servo(False)
    assert not robot.read_status().servo_on


# --- moves ------------------------------------------------------------------------------------------


def test_move_pulse_reaches_its_target(emulator, robot):
    robot.servo(True)
    target = GP7_AXES.radians_to_pulses(TARGET_Q)
    assert np.abs(sim_joints(emulator) - TARGET_Q).max() > 0.5  # far from the target before ...
    robot.move_pulse(target, MoveSpeed.joint_percent(10.0))
    wait_until_stopped(robot)
    assert np.abs(sim_joints(emulator) - TARGET_Q).max() < 1e-4  # ... and there after the move
    reading = robot.read_position("pulse").axes[:6]
    assert max(abs(a - b) for a, b in zip(reading, target)) <= 6  # within 6 pulses (0.006 deg on S/L/U)


def test_joint_speed_sets_the_duration(emulator, robot):
    """Joint moves run at the commanded % of each axis's rated speed, all axes arriving together."""
    rated = np.radians([375.0, 315.0, 410.0, 550.0, 550.0, 1000.0])  # GP7 datasheet, deg/s (sim/robots/gp7.py)
    robot.servo(True)
    for percent, target in ((20.0, TARGET_Q), (10.0, np.zeros(6))):
        start_q = sim_joints(emulator)
        with emulator.lock:
            start_t = emulator.motion.time
        robot.move_pulse(GP7_AXES.radians_to_pulses(target), MoveSpeed.joint_percent(percent))
        wait_until_stopped(robot)
        with emulator.lock:
            took = emulator.motion.time - start_t
        slowest = float(np.max(np.abs(target - start_q) / (rated * percent / 100.0)))
        assert slowest <= took <= slowest + 0.2  # interpolation time, then a few control periods to settle


def test_move_cartesian_joint_absolute_reaches_the_pose(emulator, robot):
    robot.servo(True)
    move_tool_down(robot, [0.45, -0.10, 0.35], yaw=-0.3)
    xyz, rotation = robot.read_tool_pose()
    assert xyz.tolist() == pytest.approx([0.45, -0.10, 0.35], abs=2e-5)
    assert rotation[2] == pytest.approx(-0.3, abs=1e-4)


def test_move_cartesian_linear_runs_a_straight_line(paced_robot):
    emulator, robot = paced_robot
    robot.servo(True)
    move_tool_down(robot, [0.45, -0.15, 0.30])
    start, end = np.array([0.45, -0.15, 0.30]), np.array([0.50, 0.15, 0.35])
    robot.move_cartesian(end, [*DOWN, 0.5], MoveSpeed.linear_mm_s(50.0))  # 6.2 s of sim time, 1.6 s here: many samples
    samples = []
    while robot.read_status().running:
        samples.append(robot.read_tool_pose()[0])
    assert len(samples) >= 5
    direction = (end - start) / np.linalg.norm(end - start)
    off_line = [np.linalg.norm((p - start) - np.dot(p - start, direction) * direction) for p in samples]
    assert max(off_line) < 0.003  # within 3 mm of the line all the way
    xyz, rotation = robot.read_tool_pose()
    assert xyz.tolist() == pytest.approx(end.tolist(), abs=2e-5) and rotation[2] == pytest.approx(0.5, abs=1e-4)
    with emulator.lock:
        sim_xyz = emulator.motion.tool_pose()[0]
    assert sim_xyz.tolist() == pytest.approx(end.tolist(), abs=2e-5)


def test_move_cartesian_incremental_and_pulse_linear(emulator, robot):
    robot.servo(True)
    move_tool_down(robot, [0.45, 0.0, 0.30])
    robot.move_cartesian([0.0, 0.05, -0.05], [0.0, 0.0, 0.2], MoveSpeed.linear_mm_s(300.0),
                         motion=CartesianMotion.LINEAR_INCREMENTAL)
    wait_until_stopped(robot)
    xyz, rotation = robot.read_tool_pose()
    assert xyz.tolist() == pytest.approx([0.45, 0.05, 0.25], abs=2e-5) and rotation[2] == pytest.approx(0.2, abs=1e-4)
    # A pulse target reached along a straight line (0x8B instance 2): a tool-down pose solved by the cell's IK.
    with emulator.lock:
        q = emulator.motion.robot.model.tool_down_ik(0.5, -0.05, 0.3, 0.0, list(emulator.motion.joints()))
    robot.move_pulse(GP7_AXES.radians_to_pulses(q), MoveSpeed.linear_mm_s(300.0), motion=PulseMotion.LINEAR)
    wait_until_stopped(robot)
    assert robot.read_tool_pose()[0].tolist() == pytest.approx([0.5, -0.05, 0.3], abs=5e-5)


def test_hold_stops_a_move_and_blocks_the_next(paced_robot):
    emulator, robot = paced_robot
    robot.servo(True)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(1.0))  # a slow move: ~6 s sim
    robot.hold(True)
    status = robot.read_status()
    assert status.hold_command and not status.running
    held = sim_joints(emulator)
    assert np.abs(held - TARGET_Q).max() > 0.1  # stopped well short of the target
    with pytest.raises(errors.CommandHold):
        robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(10.0))
    robot.hold(False)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(20.0))
    wait_until_stopped(robot)
    assert np.abs(sim_joints(emulator) - TARGET_Q).max() < 1e-4


# --- refusals ---------------------------------------------------------------------------------------


def test_move_while_servo_off_is_refused_and_nothing_moves(emulator, robot):
    before = robot.read_position("pulse").axes
    with pytest.raises(errors.ServoOff) as caught:
        robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(10.0))
    assert caught.value.added_status == 0x2070
    assert not robot.read_status().running and robot.read_position("pulse").axes == before


def test_move_in_teach_mode_is_refused(emulator, robot):
    robot.servo(True)
    emulator.set_mode(play=False)  # the pendant's key: teach (servo power drops with it)
    assert robot.read_status().teach
    with pytest.raises(errors.IncorrectMode) as caught:
        robot.move_cartesian([0.45, 0.0, 0.3], [*DOWN, 0.0], MoveSpeed.linear_mm_s(100.0))
    assert caught.value.added_status == 0x2080
    with pytest.raises(errors.IncorrectMode):
        robot.servo(True)


def test_undefined_command(robot):
    with pytest.raises(errors.UndefinedCommand) as caught:
        robot.request(0x99, 1, 0, Service.GET_ALL)
    assert caught.value.added_status == 0xA000


def test_speed_zero_is_refused(emulator, robot):
    robot.servo(True)
    with pytest.raises(errors.SpeedSettingError) as caught:
        robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(0.0))
    assert caught.value.added_status == 0xB009
    with pytest.raises(errors.SpeedSettingError):  # a joint % on a linear move
        robot.move_cartesian([0.45, 0.0, 0.3], [*DOWN, 0.0], MoveSpeed.joint_percent(10.0))
    assert not robot.read_status().running


def test_targets_outside_limits_or_reach_are_refused_before_moving(emulator, robot):
    robot.servo(True)
    before = sim_joints(emulator)
    beyond_s = GP7_AXES.radians_to_pulses([math.radians(175.0), 0, 0, 0, 0, 0])  # S stops at +-170 deg
    with pytest.raises(errors.DataRangeError):
        robot.move_pulse(beyond_s, MoveSpeed.joint_percent(10.0))
    with pytest.raises(errors.DataRangeError):  # 1.5 m away: beyond the GP7's 0.927 m reach
        robot.move_cartesian([1.5, 0.0, 0.3], [*DOWN, 0.0], MoveSpeed.linear_mm_s(100.0))
    with pytest.raises(errors.DataRangeError):  # a tilted tool: this cell's IK keeps the tool pointing down
        robot.move_cartesian([0.45, 0.0, 0.3], [math.pi / 2, 0.0, 0.0], MoveSpeed.linear_mm_s(100.0))
    assert not robot.read_status().running
    assert np.abs(sim_joints(emulator) - before).max() < 1e-3


def test_a_second_move_while_running_is_refused(paced_robot):
    _, robot = paced_robot
    robot.servo(True)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(1.0))
    with pytest.raises(errors.ManipulatorOperating):
        robot.move_pulse(GP7_AXES.radians_to_pulses(np.zeros(6)), MoveSpeed.joint_percent(10.0))


@pytest.mark.parametrize("call, error, code", [
    (lambda r: r.request(Command.READ_STATUS, 2, 0, Service.GET_ALL), errors.InstanceOutOfRange, 0xA001),
    (lambda r: r.request(Command.READ_POSITION, 7, 0, Service.GET_ALL), errors.InstanceOutOfRange, 0xA001),
    (lambda r: r.request(Command.READ_STATUS, 1, 3, Service.GET_SINGLE), errors.AttributeOutOfRange, 0xA002),
    (lambda r: r.request(Command.HOLD_SERVO, 2, 1, Service.SET_SINGLE, b"\x01\0"), errors.DataSizeError, 0xB003),
    (lambda r: r.request(Command.MOVE_CARTESIAN, 2, 1, Service.SET_ALL, b"\0" * 100), errors.DataSizeError, 0xB003),
    (lambda r: r.request(Command.HOLD_SERVO, 2, 1, Service.SET_SINGLE, b"\x07\0\0\0"), errors.DataRangeError, 0xB004),
    (lambda r: r.request(Command.MOVE_PULSE, 3, 1, Service.SET_ALL, b"\0" * 88), errors.InstanceOutOfRange, 0xA001),
    (lambda r: r.request(Command.READ_STATUS, 1, 0, Service.SET_ALL), errors.CommandNotDefined, 0),
], ids=["status-instance", "position-group", "status-attribute", "switch-size", "move-size", "switch-value",
        "move-instance", "read-with-a-write-service"])
def test_bad_requests_get_the_controllers_codes(robot, call, error, code):
    with pytest.raises(error) as caught:
        call(robot)
    assert caught.value.added_status == code


def test_get_single_reads_one_attribute(robot):
    robot.servo(True)
    data2 = robot.request(Command.READ_STATUS, 1, 2, Service.GET_SINGLE).payload
    assert data2 == (0x40).to_bytes(4, "little")  # Data 2 alone: servo on


def test_move_needs_command_remote_and_control_group_one(emulator, robot):
    robot.servo(True)
    bad_group = MoveCartesianData(1, 1000, 16, (450000, 0, 300000, 1800000, 0, 0), robot_group=2).encode()
    with pytest.raises(errors.ControlGroupError):
        robot.request(Command.MOVE_CARTESIAN, 2, 1, Service.SET_ALL, bad_group)
    emulator.set_remote(False)
    with pytest.raises(errors.RemoteNotSet):
        robot.move_cartesian([0.45, 0.0, 0.3], [*DOWN, 0.0], MoveSpeed.linear_mm_s(100.0))


def test_an_internal_failure_costs_one_request_not_the_server(emulator, robot):
    robot.servo(True)
    with emulator.lock:
        emulator.motion.kinematics.close()  # the Bullet client that checks targets is gone: planning fails inside
    with pytest.raises(errors.HsesStatusError) as caught:
        robot.move_cartesian([0.45, 0.0, 0.3], [*DOWN, 0.0], MoveSpeed.linear_mm_s(100.0))
    assert caught.value.added_status == 0xCFFF and "Other error" in str(caught.value)
    assert robot.read_status().servo_on and emulator.stats["crashed"] == 0


# --- alarms -----------------------------------------------------------------------------------------


def test_alarm_stops_the_arm_until_reset(emulator, robot):
    robot.servo(True)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(1.0))
    emulator.raise_alarm(4107, "OUT OF RANGE")
    status = robot.read_status()
    assert status.alarm and not status.servo_on and not status.running
    alarm = robot.read_alarm(1)
    assert (alarm.code, alarm.name) == (4107, "OUT OF RANGE") and len(alarm.time) == 16
    assert robot.read_alarm(2).code == 0
    with pytest.raises(errors.AlarmOccurring):
        robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(10.0))
    with pytest.raises(errors.ServoCannotTurnOn):
        robot.servo(True)
    robot.alarm_reset(ResetKind.ALARM)
    assert not robot.read_status().alarm and robot.read_alarm(1).code == 0
    assert robot.read_alarm_history(1).code == 4107  # the history keeps it
    robot.servo(True)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(20.0))
    wait_until_stopped(robot)
    assert np.abs(sim_joints(emulator) - TARGET_Q).max() < 1e-4


def test_servo_off_from_outside_stops_a_move(emulator, robot):
    robot.servo(True)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(1.0))
    emulator.servo_off()  # an emergency stop
    status = robot.read_status()
    assert not status.servo_on and not status.running


# --- lost replies, outages, nobody there ------------------------------------------------------------


def test_every_reply_dropped_times_out_after_the_retries():
    with HsesEmulator("conveyor-pick", port=0, speed=0, faults=Faults(drop_rate=1.0)) as emu, \
            HsesClient(*emu.address, timeout=0.15, retries=2) as robot:
        started = time.monotonic()
        with pytest.raises(errors.HsesTimeout, match="3 tries"):
            robot.read_status()
        assert 0.4 < time.monotonic() - started < 2.0
        assert robot.stats["sent"] == 3 and robot.stats["retries"] == 2
        assert emu.stats["replies_dropped"] == 3


def test_a_lost_reply_is_retried_and_the_move_runs_once(emulator, robot):
    robot.servo(True)
    emulator.drop_next_replies(1)
    robot.move_pulse(GP7_AXES.radians_to_pulses(TARGET_Q), MoveSpeed.joint_percent(10.0))  # no ManipulatorOperating
    assert robot.stats["retries"] == 1 and emulator.stats["retries_answered"] == 1
    wait_until_stopped(robot)
    assert np.abs(sim_joints(emulator) - TARGET_Q).max() < 1e-4


def test_half_the_replies_lost_still_gets_through():
    with HsesEmulator("conveyor-pick", port=0, speed=0, faults=Faults(drop_rate=0.5, seed=3)) as emu, \
            HsesClient(*emu.address, timeout=0.1, retries=8) as robot:
        for _ in range(20):
            assert robot.read_status().play
        assert emu.stats["replies_dropped"] > 0 and robot.stats["retries"] >= emu.stats["replies_dropped"]
        assert emu.stats["datagrams"] == robot.stats["sent"]


def test_an_outage_times_out_then_recovers(emulator):
    with HsesClient(*emulator.address, timeout=0.1, retries=0) as robot:
        emulator.outage(0.5)
        with pytest.raises(errors.HsesTimeout):
            robot.read_status()
        time.sleep(0.5)
        assert robot.read_status().play
    with HsesClient(*emulator.address, timeout=0.2, retries=6) as patient:
        emulator.outage(0.5)
        assert patient.read_status().play  # its retries outlast the outage
    assert emulator.stats["outage_ignored"] >= 2


def test_nobody_listening_times_out():
    with HsesEmulator("conveyor-pick", port=0, speed=0) as emu:
        address = emu.address
    with HsesClient(*address, timeout=0.1, retries=1) as robot:
        with pytest.raises(errors.HsesTimeout, match="2 tries"):
            robot.read_status()


# --- the emulator's own settings and the CLI ----------------------------------------------------------


def test_remote_bind_and_other_robots_are_refused():
    from genba.hses import EmulatorError

    with pytest.raises(EmulatorError, match="--allow-remote"):
        HsesEmulator(host="0.0.0.0", port=0)
    with pytest.raises(EmulatorError, match="gp7"):
        HsesEmulator(robot="panda", port=0)


def test_real_time_paces_the_cell():
    with HsesEmulator("conveyor-pick", port=0, speed=1.0) as emu, HsesClient(*emu.address) as robot:
        robot.servo(True)
        with emu.lock:
            sim_start = emu.motion.time
        started = time.monotonic()
        robot.move_pulse(GP7_AXES.radians_to_pulses([0.0, 0.126, -0.776, 0.0, -0.669, 0.5]), MoveSpeed.joint_percent(10.0))
        wait_until_stopped(robot)
        wall = time.monotonic() - started
        with emu.lock:
            sim_s = emu.motion.time - sim_start
    # T turns 0.5 rad at 1.75 rad/s: ~0.29 s of motion. Real time never runs the cell ahead of the wall clock
    # (as fast as possible, it would take a few ms) by more than the two 50 ms steps read at either end; a
    # loaded machine may make the wall clock a little longer.
    assert sim_s > 0.25 and sim_s - 0.1 <= wall <= sim_s + 1.0


def test_cli_serves_until_sigterm():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "genba", "hses-sim", "conveyor-pick", "--bind", "127.0.0.1:0",
                             "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("event") == "ready", proc.stderr.read() if proc.poll() is not None else ready
        with HsesClient(ready["host"], ready["port"]) as robot:
            assert robot.read_status().play
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        stopped = json.loads(proc.stdout.readline())
        assert stopped["event"] == "stopped" and stopped["stats"]["replies"] == 1
    finally:
        stop_process(proc)
        proc.stdout.close()
        proc.stderr.close()


def test_cli_refuses_a_remote_bind():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "genba", "hses-sim", "conveyor-pick", "--bind", "0.0.0.0:10040"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 1 and "--allow-remote" in result.stderr


@pytest.mark.parametrize("speed", [float("nan"), float("inf"), -1.0])
def test_a_speed_that_is_not_a_finite_rate_is_refused(speed):
    """NaN ran as speed 0 and inf spun a core while idle; both went into the ready line as non-JSON NaN/Infinity."""
    with pytest.raises(EmulatorError, match=f"speed {speed}: 1 = real time"):
        HsesEmulator("conveyor-pick", port=0, speed=speed)
