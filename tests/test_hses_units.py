"""HSES units: pulses, micrometres, 0.0001 deg and speed words, and their round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.hses.errors import HsesValueError
from bridge.hses.payloads import SpeedClass
from bridge.hses.units import (
    GP7_AXES,
    HsesAxes,
    MoveSpeed,
    angle_units_to_radians,
    metres_to_micrometres,
    micrometres_to_metres,
    pose_from_wire,
    pose_to_wire,
    radians_to_angle_units,
)
from sim.robots.gp7 import GP7_MODEL

# The GP7 datasheet's ranges (sim/robots/gp7.py): S +-170, L -65/+145, U -70/+190, R +-190, B +-135, T +-360 deg.
GP7_RANGE_DEG = [(-170, 170), (-65, 145), (-70, 190), (-190, 190), (-135, 135), (-360, 360)]


def test_known_values():
    assert GP7_AXES.radians_to_pulses([math.radians(90.0), 0, 0, math.radians(-45.0), 0, math.radians(360.0)]) == (
        90_000, 0, 0, -36_000, 0, 180_000)
    assert metres_to_micrometres(0.5) == 500_000 and metres_to_micrometres(-0.0000014) == -1
    assert radians_to_angle_units(math.pi) == 1_800_000 and radians_to_angle_units(math.radians(-0.00005)) == 0
    assert pose_to_wire([0.5, -0.1, 0.3], [math.pi, 0.0, -math.pi / 2]) == (500_000, -100_000, 300_000, 1_800_000, 0, -900_000)


def test_joint_round_trip_within_one_pulse():
    rng = np.random.default_rng(0)
    low, high = np.radians([r[0] for r in GP7_RANGE_DEG]), np.radians([r[1] for r in GP7_RANGE_DEG])
    one_pulse = np.radians(1.0 / np.asarray(GP7_AXES.pulses_per_degree))
    for _ in range(2000):
        q = rng.uniform(low, high)
        pulses = GP7_AXES.radians_to_pulses(q)
        assert all(isinstance(p, int) for p in pulses)
        back = GP7_AXES.pulses_to_radians(pulses)
        assert np.all(np.abs(back - q) <= one_pulse / 2 + 1e-12)  # rounding: half a pulse at most
        assert GP7_AXES.radians_to_pulses(back) == pulses  # and pulses survive the trip exactly


def test_pulses_to_radians_ignores_the_unused_axis_words():
    assert GP7_AXES.pulses_to_radians((1000, 0, 0, 0, 0, 500, 77, 99)).tolist() == pytest.approx(
        [math.radians(1.0), 0, 0, 0, 0, math.radians(1.0)])


def test_metre_and_angle_round_trips_within_one_unit():
    rng = np.random.default_rng(1)
    for x in rng.uniform(-2.0, 2.0, 2000):
        assert abs(micrometres_to_metres(metres_to_micrometres(x)) - x) <= 0.5e-6 + 1e-15
    for a in rng.uniform(-2 * math.pi, 2 * math.pi, 2000):
        assert abs(angle_units_to_radians(radians_to_angle_units(a)) - a) <= math.radians(0.5e-4) + 1e-15
    wire = pose_to_wire([0.1234567, -0.5, 0.25], [3.0, -0.2, 1.0])
    xyz, rotation = pose_from_wire(wire)
    assert xyz.tolist() == pytest.approx([0.1234567, -0.5, 0.25], abs=1e-6)
    assert rotation.tolist() == pytest.approx([3.0, -0.2, 1.0], abs=math.radians(1e-4))


def test_gp7_axes_cover_the_urdf_and_match_its_joints():
    assert GP7_AXES.count == len(GP7_MODEL.arm_joints)
    # The full datasheet range of every axis fits a signed 32-bit word.
    GP7_AXES.radians_to_pulses(np.radians([r[1] for r in GP7_RANGE_DEG]))
    GP7_AXES.radians_to_pulses(np.radians([r[0] for r in GP7_RANGE_DEG]))


def test_speed_words():
    assert MoveSpeed.joint_percent(25.0).wire() == (SpeedClass.PERCENT, 2500)  # 0.01 %
    assert MoveSpeed.linear_mm_s(200.0).wire() == (SpeedClass.LINEAR, 2000)  # 0.1 mm/s
    assert MoveSpeed.angular_deg_s(30.0).wire() == (SpeedClass.ANGULAR, 300)  # 0.1 deg/s
    assert MoveSpeed.joint_percent(0.0).wire() == (SpeedClass.PERCENT, 0)  # the controller, not the client, refuses 0
    assert MoveSpeed.from_wire(1, 2000) == MoveSpeed.linear_mm_s(200.0)


@pytest.mark.parametrize("call, match", [
    (lambda: GP7_AXES.radians_to_pulses([0.0] * 5), "5 joint values for 6 axes"),
    (lambda: GP7_AXES.radians_to_pulses([1e9, 0, 0, 0, 0, 0]), "axis S: .* does not fit a signed 32-bit word"),
    (lambda: GP7_AXES.radians_to_pulses([math.nan, 0, 0, 0, 0, 0]), "not a finite number"),
    (lambda: GP7_AXES.pulses_to_radians([0, 0]), "2 pulse values for 6 axes"),
    (lambda: HsesAxes(("S", "L"), (1000.0,)), "2 names and 1 pulse rates"),
    (lambda: HsesAxes(("S",), (0.0,)), "must be positive"),
    (lambda: metres_to_micrometres(5000.0), "does not fit"),
    (lambda: MoveSpeed.linear_mm_s(-1.0).wire(), "negative"),
    (lambda: MoveSpeed.from_wire(7, 10), "speed class 7"),
    (lambda: pose_to_wire([0.0, 0.0], [0.0, 0.0, 0.0]), "3 coordinates and 3 rotations"),
])
def test_values_that_cannot_go_on_the_wire(call, match):
    with pytest.raises(HsesValueError, match=match):
        call()
