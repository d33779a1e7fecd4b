"""The servo pipeline on simulated time: interpolation, coast, hold, resume, and the safety filter's say.

A gantry at 250 Hz (4 ms cycles) with limits far beyond the moves here unless a test tightens
one; values are binary-exact so results compare with ==.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from bridge import gantry
from bridge.limits import SafetyLimits
from bridge.safety import SafetyFilter
from bridge.servo import ServoPipeline
from bridge.watchdog import ServoState, Watchdog

MS = 1_000_000
STEP = 4 * MS  # one servo cycle
START = (0.0, 0.0, 0.25)
GENEROUS = {"joint_lower": [-5.0] * 3, "joint_upper": [5.0] * 3, "joint_max_velocity": [1e3] * 3,
            "joint_max_acceleration": [1e9] * 3, "max_relative_target": [5.0] * 3,
            "workspace_low": [-5.0] * 3, "workspace_high": [5.0] * 3, "max_ee_speed": 1e3}
a = np.array


def pipeline(start=START, **tight) -> ServoPipeline:
    limits = SafetyLimits.from_robot_spec({**gantry.robot_spec(), **GENEROUS, **tight})
    safety = SafetyFilter(limits, STEP / 1e9, a(start), gantry.forward_kinematics_floats)
    return ServoPipeline(safety, Watchdog(hold_after=2, drop_after_s=1.0))


def test_interpolates_exactly_from_the_last_applied_command():
    servo = pipeline()
    assert servo.feed(a([0.0625, -0.03125, 0.25]), start_ns=0, end_ns=4 * STEP) is False
    sent = [servo.cycle(i * STEP).tolist() for i in range(1, 5)]
    assert sent == [[0.015625, -0.0078125, 0.25], [0.03125, -0.015625, 0.25], [0.046875, -0.0234375, 0.25],
                    [0.0625, -0.03125, 0.25]]
    assert servo.state is ServoState.RUN and not servo.changed
    servo.feed(a([0.0, 0.0, 0.25]), start_ns=4 * STEP, end_ns=8 * STEP)  # the next segment starts where this one ended
    assert servo.cycle(5 * STEP).tolist() == [0.046875, -0.0234375, 0.25]


def test_a_control_period_of_uneven_cycles_moves_by_i_over_cycles_exactly():
    # How the twin calls it: 3 cycles per 50 ms period, 16_666_666 ns apart, on a clock far from zero.
    servo, t0, step, cycles = pipeline(start=(0.1, 0.2, 0.3)), 123_456_789_000_000, 50 * MS // 3, 3
    start, target = a([0.1, 0.2, 0.3]), a([0.3, -0.1, 0.35])
    servo.feed(target, t0, t0 + cycles * step)
    for i in range(1, cycles + 1):
        np.testing.assert_array_equal(servo.cycle(t0 + i * step), start + (target - start) * (i / cycles))


def test_coasts_at_the_last_applied_command_then_holds_on_the_second_missed_cycle():
    servo = pipeline(joint_max_velocity=[0.5] * 3)  # 2 mm per cycle: the segment's end is out of reach
    servo.feed(a([0.0625, -0.03125, 0.25]), 0, 4 * STEP)
    last = [servo.cycle(i * STEP) for i in range(1, 5)][-1]
    assert servo.changed and last[0] < 0.0625
    coasting = servo.cycle(5 * STEP)
    np.testing.assert_array_equal(coasting, last)  # stays put rather than chasing the segment's target
    assert (servo.state, servo.holds, servo.watchdog.missed) == (ServoState.COAST, 0, 1) and not servo.changed
    held = [servo.cycle(i * STEP) for i in (6, 7, 8)]
    assert servo.state is ServoState.HOLD and servo.changed
    assert servo.holds == 1 and servo.safety.report()["hold"] == 1  # one hold, counted once
    for q in held:
        np.testing.assert_array_equal(q, last)  # already at rest after the coast cycle: it stands still


def test_a_hold_decelerates_under_the_acceleration_limit():
    servo = pipeline(joint_max_acceleration=[1.0] * 3)
    servo.safety.v = a([0.125, 0.0, 0.0])  # moving at 0.125 m/s in x: 0.125 s = 31.25 cycles to stop
    servo.feed(a(START), 0, STEP)
    servo.cycle(STEP)  # the acceleration limit carries it on along x
    assert servo.safety.v[0] > 0.0
    speeds = []
    for i in range(2, 60):
        servo.cycle(i * STEP)
        speeds.append(float(servo.safety.v[0]))
    assert servo.holds == 1
    assert all(later <= earlier for earlier, later in pairwise(speeds)) and speeds[-1] == 0.0
    assert all(earlier - later <= 1.0 * 0.004 + 1e-12 for earlier, later in pairwise(speeds))


def test_a_fresh_setpoint_ends_the_hold_and_moves_on_from_where_it_stands():
    servo = pipeline()
    servo.feed(a([0.0625, 0.0, 0.25]), 0, 4 * STEP)
    for i in range(1, 8):
        servo.cycle(i * STEP)
    assert servo.state is ServoState.HOLD
    assert servo.feed(a([0.125, 0.0, 0.25]), 8 * STEP, 12 * STEP) is True  # resumed
    assert servo.cycle(9 * STEP).tolist() == [0.078125, 0.0, 0.25]
    assert servo.state is ServoState.RUN and not servo.changed and servo.holds == 1
    assert servo.feed(a([0.25, 0.0, 0.25]), 12 * STEP, 16 * STEP) is False  # not holding: nothing to resume


def test_changed_says_when_a_clamp_acted_and_measured_positions_reach_the_filter():
    servo = pipeline(max_relative_target=[0.0078125] * 3)
    servo.feed(a([0.0625, -0.03125, 0.25]), 0, 4 * STEP)
    # The robot has not moved: the first command may be at most 7.8 mm from it; half of 15.6 mm, direction kept.
    assert servo.cycle(STEP, measured=a(START)).tolist() == [0.0078125, -0.00390625, 0.25]
    assert servo.changed and servo.state is ServoState.RUN
    assert servo.safety.report()["relative_target"] == 1
    assert servo.cycle(2 * STEP).tolist() == [0.03125, -0.015625, 0.25]  # no measurement: no cap
    assert not servo.changed


def test_a_latched_stop_holds_through_the_pipeline():
    servo = pipeline()
    servo.feed(a([0.0625, 0.0, 0.25]), 0, 4 * STEP)
    servo.safety.latch_stop("operator stop")
    assert servo.cycle(STEP).tolist() == list(START)
    assert servo.changed and servo.safety.report()["latched"] == 2  # the latch, then one cycle held


def test_stands_still_before_the_first_setpoint_without_counting_missed_cycles():
    servo = pipeline()
    for i in range(1, 301):  # 1.2 s: no hold starts and no session drop either
        assert servo.cycle(i * STEP).tolist() == list(START)
        assert not servo.watchdog.drop_now
    assert servo.state is ServoState.HOLD and servo.changed
    assert (servo.holds, servo.watchdog.missed, servo.safety.report()["hold"]) == (0, 0, 0)


def test_assigning_safety_q_before_feed_starts_the_segment_there():
    servo = pipeline()
    servo.safety.q = a([0.125, 0.0, 0.25])  # the twin re-anchors on its cell's own target each period
    servo.feed(a([0.25, 0.0, 0.25]), 0, 4 * STEP)
    assert servo.cycle(2 * STEP).tolist() == [0.1875, 0.0, 0.25]


def test_the_session_drop_falls_due_one_second_after_the_last_setpoint_started():
    servo = pipeline()
    servo.feed(a([0.0625, 0.0, 0.25]), 0, 4 * STEP)
    due = []
    for i in range(1, 300):
        servo.cycle(i * STEP)
        due += [i] if servo.watchdog.drop_now else []
    assert due == [250]  # 250 cycles of 4 ms


def test_feed_rejects_an_empty_segment_and_a_target_of_the_wrong_size():
    servo = pipeline()
    with pytest.raises(ValueError, match="a segment must end after it starts: start_ns 8, end_ns 8"):
        servo.feed(a(START), 8, 8)
    with pytest.raises(ValueError, match=r"target has shape \(2,\); the robot has 3 joints"):
        servo.feed(a([0.0, 0.0]), 0, STEP)
