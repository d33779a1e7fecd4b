"""Safety layer: each clamp against hand-computed values, then the filter that chains them.

Values are chosen to be exact in binary floating point so results compare with ==.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge import gantry
from bridge.limits import LimitsError, SafetyLimits
from bridge.safety import (
    SafetyFilter,
    clamp_joint_acceleration,
    clamp_joint_positions,
    clamp_joint_velocity,
    clamp_relative_target,
    clamp_to_workspace,
    decelerate_to_hold,
    limit_tool_speed,
    reject_non_finite,
)

a = np.array


def identity_fk(q):
    return list(q)


def test_reject_non_finite_replaces_the_whole_command():
    assert reject_non_finite([0.1, float("nan"), 0.2], fallback=[1.0, 2.0, 3.0]) == ([1.0, 2.0, 3.0], True)
    assert reject_non_finite([0.1, -float("inf"), 0.2], fallback=[0.0, 0.0, 0.0]) == ([0.0, 0.0, 0.0], True)


def test_reject_non_finite_passes_finite_commands_unchanged():
    command = [0.1, -0.2, 1e300]
    value, intervened = reject_non_finite(command, fallback=[0.0, 0.0, 0.0])
    assert not intervened and value is command


def test_clamp_joint_positions():
    assert clamp_joint_positions([0.75, -0.625, 0.25], lower=[-0.5, -0.5, 0.0], upper=[0.5, 0.5, 0.5]) == (
        [0.5, -0.5, 0.25], True)
    inside = [0.5, -0.5, 0.0]
    value, intervened = clamp_joint_positions(inside, lower=[-0.5, -0.5, 0.0], upper=[0.5, 0.5, 0.5])
    assert not intervened and value is inside


def test_clamp_relative_target_scales_the_move_from_the_measured_position():
    # x wants 0.5 from measured, cap 0.125 -> the whole move shrinks to a quarter, direction kept.
    assert clamp_relative_target([0.5, 0.25, 0.0], q_measured=[0.0, 0.0, 0.0], max_relative=[0.125] * 3) == (
        [0.125, 0.0625, 0.0], True)
    assert clamp_relative_target([1.0, 1.0], q_measured=[0.875, 1.0], max_relative=[0.125, 0.125]) == ([1.0, 1.0], False)


def test_clamp_joint_velocity():
    # 0.5 rad/s for 0.25 s allows 0.125 per joint; x asks 0.5 -> factor 0.25 for the whole move.
    assert clamp_joint_velocity([0.5, 0.0, -0.25], q_prev=[0.0, 0.0, 0.0], max_velocity=[0.5] * 3, dt=0.25) == (
        [0.125, 0.0, -0.0625], True)
    assert clamp_joint_velocity([1.125, 2.0], q_prev=[1.0, 2.0], max_velocity=[0.5, 0.5], dt=0.25) == ([1.125, 2.0], False)


def test_clamp_joint_acceleration_limits_braking_too():
    # Moving at 1 rad/s, told to stop at once: with 2 rad/s^2 and dt 0.25 it may only slow to 0.5 rad/s.
    assert clamp_joint_acceleration([0.0, 0.0], q_prev=[0.0, 0.0], v_prev=[1.0, 0.0], max_acceleration=[2.0, 2.0],
                                    dt=0.25) == ([0.125, 0.0], True)
    # Speeding up from rest: 0.5 rad/s in one cycle is exactly the allowed change.
    assert clamp_joint_acceleration([0.125, 0.0], q_prev=[0.0, 0.0], v_prev=[0.0, 0.0], max_acceleration=[2.0, 2.0],
                                    dt=0.25) == ([0.125, 0.0], False)


def test_decelerate_to_hold_slows_all_joints_together():
    # The slowest to stop (0.5 rad/s at 1 rad/s^2) needs 0.5 s: every velocity shrinks by dt/T = 1/4 per cycle.
    assert decelerate_to_hold(q_prev=[0.0, 0.0, 1.0], v_prev=[0.5, -0.25, 0.0], max_acceleration=[1.0] * 3,
                              dt=0.125) == [0.046875, -0.0234375, 1.0]
    # At rest: stays put.
    assert decelerate_to_hold([0.5, 0.25], [0.0, 0.0], [1.0, 1.0], 0.125) == [0.5, 0.25]


def test_decelerate_to_hold_stops_within_the_acceleration_budget():
    q, v, dt, acc = [0.0], [0.5], 0.125, [1.0]
    for cycle in range(4):  # T = 0.5 s = 4 cycles
        q_next = decelerate_to_hold(q, v, acc, dt)
        v_next = [(q_next[0] - q[0]) / dt]
        assert abs(v_next[0] - v[0]) <= acc[0] * dt + 1e-12
        q, v = q_next, v_next
    assert v == [0.0]
    assert decelerate_to_hold(q, v, acc, dt) == q


BOX_LOW, BOX_HIGH = [-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]


def test_clamp_to_workspace_stops_the_tool_on_the_box_face():
    # From x = 0.25 towards x = 0.75: the face x = 0.5 is halfway, so half the move is applied.
    assert clamp_to_workspace([0.75, 0.25, 0.0], q_prev=[0.25, 0.0, 0.0], fk=identity_fk, low=BOX_LOW, high=BOX_HIGH) == (
        [0.5, 0.125, 0.0], True)
    assert clamp_to_workspace([0.5, 0.0, 0.0], q_prev=[0.25, 0.0, 0.0], fk=identity_fk, low=BOX_LOW, high=BOX_HIGH) == (
        [0.5, 0.0, 0.0], False)


def test_clamp_to_workspace_lets_an_outside_tool_move_back_in_only():
    assert clamp_to_workspace([0.625, 0.0, 0.0], q_prev=[0.75, 0.0, 0.0], fk=identity_fk, low=BOX_LOW, high=BOX_HIGH) == (
        [0.625, 0.0, 0.0], False)
    assert clamp_to_workspace([0.875, 0.0, 0.0], q_prev=[0.75, 0.0, 0.0], fk=identity_fk, low=BOX_LOW, high=BOX_HIGH) == (
        [0.75, 0.0, 0.0], True)


def test_clamp_to_workspace_bisects_curved_kinematics():
    # Tool x = q0 ** 3: the straight-line guess misses; bisection lands on the face.
    value, intervened = clamp_to_workspace([1.0, 0.0, 0.0], q_prev=[0.0, 0.0, 0.0], fk=lambda q: [q[0] ** 3, 0.0, 0.0],
                                           low=BOX_LOW, high=BOX_HIGH)
    assert intervened
    assert value[0] == pytest.approx(0.5 ** (1 / 3), abs=1e-8)
    assert value[0] ** 3 <= 0.5 + 1e-8


def test_clamp_to_workspace_tolerance_counts_a_point_just_outside_as_inside():
    # 0.5 + 2**-40 is outside the box by ~9e-13, within the default 1e-9 * (1 + 1) slack; not with none.
    just_outside = [0.5 + 2.0 ** -40, 0.0, 0.0]
    assert clamp_to_workspace(just_outside, [0.25, 0.0, 0.0], identity_fk, BOX_LOW, BOX_HIGH)[1] is False
    assert clamp_to_workspace(just_outside, [0.25, 0.0, 0.0], identity_fk, BOX_LOW, BOX_HIGH, tolerance=0.0) == (
        [0.5, 0.0, 0.0], True)


def test_limit_tool_speed_scales_the_move_along_its_direction():
    # A 0.625 m move (3-4-5 triangle) with a 0.625 m/s cap over 0.5 s: half of it.
    assert limit_tool_speed([0.375, 0.5, 0.0], q_prev=[0.0, 0.0, 0.0], fk=identity_fk, max_speed=0.625, dt=0.5) == (
        [0.1875, 0.25, 0.0], True)
    assert limit_tool_speed([0.1875, 0.25, 0.0], q_prev=[0.0, 0.0, 0.0], fk=identity_fk, max_speed=0.625, dt=0.5) == (
        [0.1875, 0.25, 0.0], False)


def planar_arm(q):
    """A planar two-link arm of 0.5 m links: tool xyz for (shoulder, elbow) angles."""
    return [0.5 * math.cos(q[0]) + 0.5 * math.cos(q[0] + q[1]), 0.5 * math.sin(q[0]) + 0.5 * math.sin(q[0] + q[1]), 0.0]


def test_limit_tool_speed_on_curved_kinematics_stays_under_the_cap():
    q_prev = [0.1, 0.4]
    value, intervened = limit_tool_speed([0.9, 1.4], q_prev=q_prev, fk=planar_arm, max_speed=0.25, dt=0.004)
    assert intervened
    travelled = math.dist(planar_arm(value), planar_arm(q_prev))
    assert 0.25 * 0.004 * 0.99 <= travelled <= 0.25 * 0.004 * (1 + 1e-9)


def test_clamps_that_act_return_new_lists_and_leave_their_inputs_alone():
    q, q_prev = [0.75, 0.0, 0.0], [0.25, 0.0, 0.0]
    for value, intervened in (clamp_joint_positions(q, BOX_LOW, BOX_HIGH), clamp_relative_target(q, q_prev, [0.125] * 3),
                              clamp_joint_velocity(q, q_prev, [0.5] * 3, 0.25),
                              clamp_joint_acceleration(q, q_prev, [0.0] * 3, [1.0] * 3, 0.25),
                              clamp_to_workspace(q, q_prev, identity_fk, BOX_LOW, BOX_HIGH),
                              limit_tool_speed(q, q_prev, identity_fk, 1.0, 0.25)):
        assert intervened and type(value) is list and value is not q
    assert (q, q_prev) == ([0.75, 0.0, 0.0], [0.25, 0.0, 0.0])


# ------------------------------------------------------------------ limits


def test_limits_from_the_gantry_spec_and_defaults():
    limits = SafetyLimits.from_robot_spec(gantry.robot_spec())
    np.testing.assert_array_equal(limits.max_acceleration, [5.0, 5.0, 5.0])
    spec = dict(gantry.robot_spec())
    del spec["joint_max_acceleration"]
    defaulted = SafetyLimits.from_robot_spec(spec)
    np.testing.assert_array_equal(defaulted.max_acceleration, [2.5, 2.5, 2.5])  # 0.5 m/s reached in 0.2 s
    np.testing.assert_array_equal(defaulted.max_relative_target, [0.05, 0.05, 0.05])  # 0.1 s at full speed
    assert defaulted.reduced_tool_speed == 0.25


@pytest.mark.parametrize(
    "change, message",
    [
        ({"joint_lower": [-0.5, -0.5]}, "robot.joint_lower: expected 3 numbers"),
        ({"joint_upper": [-0.5, 0.5, 0.6]}, "joint_lower must be below joint_upper for ['x']"),
        ({"joint_max_velocity": [0.5, 0.0, 0.5]}, "joint_max_velocity: must be positive"),
        ({"max_ee_speed": None}, "max_ee_speed: expected a positive speed"),
        ({"workspace_low": [0, 0, 1]}, "must be below workspace_high"),
        ({"joint_names": []}, "joint_names: expected a non-empty list"),
        ({"joint_lower": [None, 0, 0]}, "values must be finite"),
    ],
)
def test_limits_errors_say_what_and_where(change, message):
    with pytest.raises(LimitsError) as info:
        SafetyLimits.from_robot_spec({**gantry.robot_spec(), **change})
    assert message in str(info.value)


def test_tighten_keeps_the_stricter_value_of_each_limit():
    cell = SafetyLimits.from_robot_spec({**gantry.robot_spec(), "joint_upper": [0.25, 0.5, 0.75], "max_ee_speed": 1.0})
    bundle = SafetyLimits.from_robot_spec(gantry.robot_spec())
    both = cell.tighten(bundle)
    np.testing.assert_array_equal(both.joint_upper, [0.25, 0.5, 0.6])
    assert both.max_tool_speed == 0.6
    with pytest.raises(LimitsError, match="joint names differ"):
        cell.tighten(SafetyLimits.from_robot_spec({**gantry.robot_spec(), "joint_names": ["a", "b", "c"]}))


# ------------------------------------------------------------------ the filter


def gantry_filter(dt=0.25, fk=gantry.forward_kinematics, start=(0.0, 0.0, 0.3), **spec):
    limits = SafetyLimits.from_robot_spec({**gantry.robot_spec(), **spec})
    return SafetyFilter(limits, dt, a(start), forward_kinematics=fk)


def composed_clamps(q, q_prev, v_prev, measured, limits, dt):
    """The filter's documented order, spelled out with the public clamp functions (gantry kinematics)."""
    q, q_prev, v_prev, measured = (np.asarray(x, dtype=np.float64).tolist() for x in (q, q_prev, v_prev, measured))
    lower, upper = limits.joint_lower.tolist(), limits.joint_upper.tolist()
    fk = gantry.forward_kinematics_floats
    q, _ = clamp_joint_positions(q, lower, upper)
    q, _ = clamp_relative_target(q, measured, limits.max_relative_target.tolist())
    q, _ = clamp_joint_velocity(q, q_prev, limits.max_velocity.tolist(), dt)
    q, _ = clamp_joint_acceleration(q, q_prev, v_prev, limits.max_acceleration.tolist(), dt)
    q, _ = clamp_to_workspace(q, q_prev, fk, limits.workspace_low.tolist(), limits.workspace_high.tolist())
    q, _ = limit_tool_speed(q, q_prev, fk, limits.max_tool_speed, dt)
    return a(clamp_joint_positions(q, lower, upper)[0])


def test_filter_is_the_composition_of_the_clamps_with_array_or_float_list_kinematics():
    rng = np.random.default_rng(3)
    dt = 0.004
    filters = [gantry_filter(dt=dt), gantry_filter(dt=dt, fk=gantry.forward_kinematics_floats)]
    limits = filters[0].limits
    q_prev, v_prev = filters[0].q, filters[0].v
    interventions = 0
    for i in range(2000):  # a push in a new direction every 100 cycles (into the box's faces), plus noise
        if i % 100 == 0:
            push = rng.standard_normal(3) * 0.0008
        command = q_prev + push + rng.standard_normal(3) * rng.choice([1e-6, 3e-3, 0.3], p=[0.8, 0.15, 0.05])
        measured = q_prev + rng.standard_normal(3) * 0.01  # the robot lags its commands
        want = composed_clamps(command, q_prev, v_prev, measured, limits, dt)
        for f in filters:
            np.testing.assert_array_equal(f.apply(command, measured), want)
        interventions += not np.array_equal(want, command)
        q_prev, v_prev = want, (want - q_prev) / dt
    assert filters[0].report() == filters[1].report()
    assert 500 < interventions < 1800  # both kinds of cycle: some clamp acts, none does
    kinds = ("position", "relative_target", "velocity", "acceleration", "workspace", "tool_speed")
    assert all(filters[0].report()[k] > 0 for k in kinds)


GENEROUS = {"joint_lower": [-5.0] * 3, "joint_upper": [5.0] * 3, "joint_max_velocity": [1e3] * 3,
            "joint_max_acceleration": [1e9] * 3, "max_relative_target": [5.0] * 3,
            "workspace_low": [-5.0] * 3, "workspace_high": [5.0] * 3, "max_ee_speed": 1e3}


@pytest.mark.parametrize("kind, tight, limit", [  # limit: the largest x step from (0, 0, 0.3) at rest this allows
    ("position", {"joint_upper": [0.0015, 5.0, 5.0]}, 0.0015),
    ("relative_target", {"max_relative_target": [0.002] * 3}, 0.002),
    ("velocity", {"joint_max_velocity": [0.5] * 3}, 0.5 * 0.004),
    ("acceleration", {"joint_max_acceleration": [5.0] * 3}, 5.0 * 0.004 * 0.004),
    ("workspace", {"workspace_high": [0.0015, 5.0, 5.0]}, 0.0015),
    ("tool_speed", {"max_ee_speed": 0.5}, 0.5 * 0.004),
])
def test_each_limit_alone_is_enforced_by_the_filter(kind, tight, limit):
    start = a([0.0, 0.0, 0.3])
    for fraction, intervenes in ((0.99, False), (1.01, True)):
        f = gantry_filter(dt=0.004, fk=gantry.forward_kinematics_floats, **{**GENEROUS, **tight})
        command = start + [limit * fraction, 0.0, 0.0]
        want = composed_clamps(command, start, np.zeros(3), start, f.limits, 0.004)
        np.testing.assert_array_equal(f.apply(command, measured=start), want)
        assert f.report()[kind] == int(intervenes) and sum(f.report().values()) == int(intervenes)
        assert np.array_equal(want, command) != intervenes


def test_filter_passes_a_safe_command_and_returns_a_copy():
    f = gantry_filter()
    command = a([0.0625, 0.0, 0.3])
    applied = f.apply(command)
    np.testing.assert_array_equal(applied, [0.0625, 0.0, 0.3])
    assert applied is not command
    assert f.report() == dict.fromkeys(SafetyFilter.KINDS, 0)


def test_filter_applies_position_then_velocity_and_counts_each():
    f = gantry_filter(joint_max_acceleration=[100.0] * 3)
    # z = 0.9 is above the 0.6 axis limit -> 0.6; then the velocity cap (0.5 m/s * 0.25 s = 0.125)
    # allows 0.125 of the 0.3 move in z, and scales x with it.
    applied = f.apply(a([0.1, 0.0, 0.9]))
    np.testing.assert_allclose(applied, [0.1 * 0.125 / 0.3, 0.0, 0.425], rtol=0, atol=1e-15)
    report = f.report()
    assert (report["position"], report["velocity"], report["acceleration"]) == (1, 1, 0)


def test_filter_workspace_box_uses_the_tool_position():
    # The tool hangs 0.1 below the carriage: carriage z = 0.6 puts the tool at 0.5 > 0.45 box top.
    f = gantry_filter(dt=1.0, start=(0.0, 0.0, 0.5), joint_max_acceleration=[100.0] * 3, max_ee_speed=10.0,
                      joint_max_velocity=[10.0] * 3, max_relative_target=[10.0] * 3)
    applied = f.apply(a([0.0, 0.0, 0.6]))
    np.testing.assert_allclose(applied, [0.0, 0.0, 0.55], rtol=0, atol=1e-12)
    assert f.report()["workspace"] == 1


def test_filter_reduced_speed_caps_the_tool_at_250_mm_per_s():
    f = gantry_filter(dt=0.004, joint_max_acceleration=[1e6] * 3)
    f.set_reduced_speed(True)
    applied = f.apply(a([0.0018, 0.0024, 0.3]))  # 3 mm in 4 ms = 0.75 m/s, within the 0.5 m/s axis limits
    np.testing.assert_allclose(applied, [0.0006, 0.0008, 0.3], rtol=0, atol=1e-15)  # 1 mm in 4 ms = 0.25 m/s
    assert f.report()["tool_speed"] == 1
    f.set_reduced_speed(False)
    assert f.tool_speed_limit == 0.6


def test_reduced_speed_binds_between_its_limit_and_the_full_one_and_lifts_when_switched_off():
    f = gantry_filter(dt=0.004, joint_max_acceleration=[1e6] * 3)
    f.set_reduced_speed(True)
    applied = f.apply(a([0.0012, 0.0016, 0.3]))  # 2 mm in 4 ms = 0.5 m/s: under the full 0.6, over the reduced 0.25
    np.testing.assert_allclose(applied, [0.0006, 0.0008, 0.3], rtol=0, atol=1e-15)
    assert f.report()["tool_speed"] == 1
    f.set_reduced_speed(False)
    np.testing.assert_array_equal(f.apply(a([0.0018, 0.0024, 0.3])), [0.0018, 0.0024, 0.3])  # 0.5 m/s again: allowed
    assert f.report()["tool_speed"] == 1


def test_reduced_speed_needs_forward_kinematics():
    f = gantry_filter(fk=None)
    with pytest.raises(RuntimeError, match="pass forward_kinematics="):
        f.set_reduced_speed(True)


def test_filter_non_finite_command_holds_and_counts():
    f = gantry_filter()
    np.testing.assert_array_equal(f.apply(a([np.nan, 0.0, 0.3])), [0.0, 0.0, 0.3])
    assert f.report()["non_finite"] == 1


def test_filter_non_finite_measured_position_holds_rather_than_passing_nan_on():
    f = gantry_filter()
    np.testing.assert_array_equal(f.apply(a([0.0625, 0.0, 0.3]), measured=a([np.nan, 0.0, 0.3])), [0.0, 0.0, 0.3])
    assert f.report()["non_finite"] == 1


def test_filter_rejects_commands_of_the_wrong_size():
    with pytest.raises(ValueError, match="command has shape \\(2,\\); the robot has 3 joints"):
        gantry_filter().apply(a([0.0, 0.0]))


def test_filter_relative_target_uses_the_measured_position():
    f = gantry_filter(dt=1.0, joint_max_acceleration=[100.0] * 3, max_relative_target=[0.125] * 3)
    applied = f.apply(a([0.25, 0.0, 0.3]), measured=a([0.0, 0.0, 0.3]))
    np.testing.assert_array_equal(applied, [0.125, 0.0, 0.3])
    assert f.report()["relative_target"] == 1


def test_latched_stop_decelerates_ignores_commands_until_reset():
    f = gantry_filter(dt=0.125, joint_max_acceleration=[1.0] * 3, max_relative_target=[1.0] * 3)
    f.v = a([0.5, 0.0, 0.0])  # moving at 0.5 m/s in x
    f.latch_stop("operator stop")
    positions = [f.apply(a([0.5, 0.5, 0.3]))[0] for _ in range(6)]
    np.testing.assert_array_equal(positions, [0.046875, 0.078125, 0.09375, 0.09375, 0.09375, 0.09375])
    assert f.latched == "operator stop"
    assert f.report()["latched"] == 6 + 1  # six cycles held plus the latch event itself
    f.reset_stop()
    assert f.latched is None
    moved = f.apply(a([0.125, 0.0, 0.3]))
    assert moved[0] > 0.09375


def test_hold_comes_to_rest_and_stays():
    f = gantry_filter(dt=0.125, joint_max_acceleration=[1.0] * 3)
    f.v = a([0.0, -0.5, 0.0])  # stop time 0.5 s: velocity -0.375, -0.25, -0.125, 0 over four cycles
    held = [f.hold()[1] for _ in range(5)]
    np.testing.assert_allclose(held, [-0.046875, -0.078125, -0.09375, -0.09375, -0.09375], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(f.v, [0.0, 0.0, 0.0])
