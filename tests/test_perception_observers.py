"""Observers turn detections and the robot's own sensors into a cell's task features (no simulator here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.errors import PerceptionError
from perception.localize import Detection, PartClass
from perception.observers import (
    CONVEYOR_PICK_FEATURES,
    DROP_SLOTS,
    BinBox,
    BinSortObserver,
    ConveyorPickObserver,
    RobotState,
    SortBin,
    bin_sort_features,
)

CUBE = PartClass("part", (0.9, 0.45, 0.1), "box", (0.04, 0.04, 0.04))
BIN = BinBox(drop_point=(0.25, 0.45, 0.14), low=(0.14, 0.34, -0.01), high=(0.36, 0.56, 0.08), floor_z=0.0)
BELT_TOP = 0.1
BELT = (0.0, 0.08, 0.0)  # m/s along +y
DT = 0.05


def seen(part: PartClass, x, y, z, yaw=0.0) -> Detection:
    return Detection(part.name, part.shape, np.array([x, y, z]), yaw, (0.0, 0.0), (0, 0, 1, 1), 100.0, 1.0)


def robot(tool=(0.5, 0.0, 0.3), yaw=0.0, vel=(0.0, 0.0, 0.0), opening=0.08, grip=-1.0) -> RobotState:
    return RobotState(tuple(tool), yaw, tuple(vel), opening, grip)


def conveyor() -> ConveyorPickObserver:
    return ConveyorPickObserver(CUBE, BELT_TOP, (0.0, 1.0, 0.0), BIN, settle_s=0.2)


def test_conveyor_features_follow_the_detection_and_keep_the_states_layout():
    obs = conveyor()
    assert obs.features() == CONVEYOR_PICK_FEATURES
    f = obs.observe([seen(CUBE, 0.52, -0.3, 0.12, yaw=0.3)], robot(yaw=0.1), BELT, time=1.0)
    assert len(f) == sum(size for _, size, _ in CONVEYOR_PICK_FEATURES)
    np.testing.assert_allclose(f[0:3], [0.52, -0.3, 0.12])  # position
    np.testing.assert_allclose(f[3:6], BELT)  # riding the belt: the belt's speed
    np.testing.assert_allclose(f[6:9], [0.02, -0.3, -0.18])  # part - tool
    assert f[9] == pytest.approx(0.2) and f[10:12] == [0.0, 1.0]  # relative yaw, not held, present
    np.testing.assert_allclose(f[12:15], [0.25 - 0.5, 0.45, 0.14 - 0.3])
    np.testing.assert_allclose(f[15:18], BELT)


def test_conveyor_without_a_part_gives_zeros_as_the_state_does():
    f = conveyor().observe([], robot(), BELT, time=0.0)
    assert f[:12] == [0.0] * 12 and f[15:] == list(BELT)


def test_conveyor_takes_the_part_furthest_along_the_belt_then_tracks_it():
    obs = conveyor()
    obs.observe([seen(CUBE, 0.5, -0.4, 0.12), seen(CUBE, 0.5, -0.1, 0.12)], robot(), BELT, time=0.0)
    assert obs.part_state()["position"][1] == pytest.approx(-0.1)
    # Next frame: both moved 4 mm; the tracked one is still the one further along.
    obs.observe([seen(CUBE, 0.5, -0.396, 0.12), seen(CUBE, 0.5, -0.096, 0.12)], robot(), BELT, time=DT)
    assert obs.part_state()["position"][1] == pytest.approx(-0.096)


def test_conveyor_predicts_with_the_belt_between_frames_and_while_hidden():
    obs = conveyor()
    obs.observe([seen(CUBE, 0.5, -0.2, 0.12)], robot(), BELT, time=0.0)
    obs.observe(None, robot(), BELT, time=DT)  # no new frame this period
    assert obs.part_state()["position"][1] == pytest.approx(-0.2 + 0.08 * DT)
    obs.observe([], robot(), BELT, time=2 * DT)  # a frame without it: hidden under the arm
    assert obs.part_state()["position"][1] == pytest.approx(-0.2 + 0.08 * 2 * DT)
    obs.observe([], robot(), BELT, time=2.0)  # hidden longer than max_blind_s: gone
    assert obs.part_state() is None


def test_conveyor_part_is_held_when_the_gripper_closes_on_it_and_moves_with_the_tool():
    obs = conveyor()
    obs.observe([seen(CUBE, 0.5, -0.2, 0.12)], robot(tool=(0.5, -0.2, 0.125)), BELT, time=0.0)
    # Closed on nothing (fingers shut): not held.
    obs.observe([seen(CUBE, 0.5, -0.196, 0.12)], robot(tool=(0.5, -0.196, 0.125), opening=0.0, grip=1.0), BELT, time=DT)
    assert obs.part_state()["held"] is False
    # Closed on the part (fingers rest 4 cm apart): held, and carried along with the tool.
    obs.observe([], robot(tool=(0.5, -0.196, 0.125), opening=0.04, grip=1.0), BELT, time=2 * DT)
    state = obs.part_state()
    assert state["held"] is True
    obs.observe([], robot(tool=(0.45, 0.1, 0.3), vel=(0.0, 0.2, 0.1), yaw=0.5, opening=0.04, grip=1.0), BELT, time=3 * DT)
    state = obs.part_state()
    np.testing.assert_allclose(state["position"], [0.45, 0.1, 0.3 - 0.005], atol=1e-9)  # the offset at the grasp
    np.testing.assert_allclose(state["velocity"], [0.0, 0.2, 0.1])
    # Carried over the bin, then let go: it falls onto the bin's floor and lies still, then it is done.
    obs.observe([], robot(tool=(0.25, 0.45, 0.14), opening=0.04, grip=1.0), BELT, time=4 * DT)
    assert obs.part_state()["in_bin"] is False  # over it, not yet down in it
    obs.observe([], robot(tool=(0.25, 0.45, 0.14), opening=0.08, grip=-1.0), BELT, time=5 * DT)
    assert obs.part_state()["held"] is False and obs.part_state()["position"][2] == pytest.approx(0.135)
    f = obs.observe([], robot(tool=(0.25, 0.45, 0.2)), BELT, time=5 * DT + 0.1)  # 0.1 s later: falling
    assert f[2] == pytest.approx(0.135 - 0.5 * 9.81 * 0.01) and f[5] == pytest.approx(-0.981)
    fall_s = math.sqrt(2 * (0.135 - 0.02) / 9.81)  # onto the floor (z = 0): its centre 2 cm up
    f = obs.observe([], robot(tool=(0.25, 0.45, 0.2)), BELT, time=5 * DT + fall_s + 0.05)
    assert f[2] == pytest.approx(0.02) and f[5] == 0.0 and f[11] == 1.0 and obs.part_state()["in_bin"] is True
    obs.observe([], robot(), BELT, time=5 * DT + fall_s + 0.25)  # lain still longer than settle_s
    assert obs.part_state() is None


def test_conveyor_refuses_a_round_part_and_a_zero_belt_direction():
    with pytest.raises(PerceptionError, match="parts are boxes"):
        ConveyorPickObserver(PartClass("p", (1, 0, 0), "cylinder", (0.04, 0.04, 0.04)), 0.1, (0, 1, 0), BIN)
    with pytest.raises(PerceptionError, match="non-zero 3-vector"):
        ConveyorPickObserver(CUBE, 0.1, (0, 0, 0), BIN)


RED = PartClass("red_cube", (0.85, 0.15, 0.1), "box", (0.04, 0.04, 0.04))
DISC = PartClass("blue_cylinder", (0.15, 0.3, 0.9), "cylinder", (0.04, 0.04, 0.05))
RED_BIN = SortBin("red_bin", BinBox((0.25, 0.42, 0.14), (0.15, 0.32, -0.01), (0.35, 0.52, 0.13), floor_z=0.0), (0.2, 0.2))
ROUND_BIN = SortBin("round_bin", BinBox((0.42, -0.42, 0.14), (0.32, -0.52, -0.01), (0.52, -0.32, 0.13), floor_z=0.0),
                    (0.2, 0.2))
TOTE = BinBox((0.5, 0.0, 0.15), (0.28, -0.22, 0.04), (0.72, 0.22, 0.15))


def sorter() -> BinSortObserver:
    return BinSortObserver([RED, DISC], ["red_bin", "round_bin"], [RED_BIN, ROUND_BIN], TOTE, support_z=0.05, parts_per_episode=3)


def test_bin_sort_targets_the_part_nearest_the_tool_with_its_class_and_bin():
    obs = sorter()
    assert obs.features() == bin_sort_features(2, 3)
    tool = robot(tool=(0.45, 0.1, 0.3), yaw=0.2)
    f = obs.observe([seen(RED, 0.6, -0.1, 0.07, yaw=0.5), seen(DISC, 0.45, 0.08, 0.075)], tool, time=0.0)
    np.testing.assert_allclose(f[0:3], [0.45, 0.08, 0.075])
    assert f[3] == 0.0  # a cylinder looks the same at every yaw
    assert f[4:6] == [0.0, 1.0] and f[6:8] == [1.0, 0.0]  # class one-hot; present, not held
    dx, dy = DROP_SLOTS[0]
    np.testing.assert_allclose(f[11:14], [0.42 + dx * 0.2 - 0.45, -0.42 + dy * 0.2 - 0.1, 0.14 - 0.3])
    assert f[14:] == [1.0, 1.0, 0.0]  # two parts left


def test_bin_sort_is_done_with_a_part_let_go_over_a_bin_and_places_the_next_beside_it():
    obs = sorter()
    at_part = robot(tool=(0.6, -0.1, 0.075))
    obs.observe([seen(RED, 0.6, -0.1, 0.07, yaw=0.1), seen(RED, 0.55, 0.05, 0.07)], at_part, time=0.0)
    obs.observe(None, robot(tool=(0.6, -0.1, 0.075), opening=0.04, grip=1.0), time=0.05)  # closed on the nearer
    assert obs.target_state()["held"] is True and obs.target_state()["position"][1] == pytest.approx(-0.1)
    over_bin = robot(tool=(0.2, 0.37, 0.16), opening=0.04, grip=1.0)
    f = obs.observe([seen(RED, 0.55, 0.05, 0.07)], over_bin, time=0.1)  # carried over the red bin
    assert f[14:] == [1.0, 1.0, 0.0] and obs.fill == {"red_bin": 0, "round_bin": 0}
    # Let go over the red bin between camera frames: done with it at once (no waiting for it to land, which
    # no image shows); the next target is the other part as the last frame saw it, bound for the next quadrant.
    f = obs.observe(None, robot(tool=(0.2, 0.37, 0.16), opening=0.08, grip=-1.0), time=0.15)
    assert obs.fill == {"red_bin": 1, "round_bin": 0}
    state = obs.target_state()
    assert state["type"] == "red_cube" and state["held"] is False
    np.testing.assert_allclose(state["position"], [0.55, 0.05, 0.07])
    dx, dy = DROP_SLOTS[1]
    np.testing.assert_allclose(state["drop_point"], [0.25 + dx * 0.2, 0.42 + dy * 0.2, 0.14])
    assert f[14:] == [1.0, 0.0, 0.0]  # one part left to pick


def test_bin_sort_keeps_a_hidden_target_where_it_was_seen_and_counts_it_left():
    obs = sorter()
    obs.observe([seen(RED, 0.6, -0.1, 0.07), seen(DISC, 0.4, 0.1, 0.075)], robot(tool=(0.6, -0.1, 0.3)), time=0.0)
    f = obs.observe([seen(DISC, 0.4, 0.1, 0.075)], robot(tool=(0.6, -0.1, 0.15)), time=0.1)  # the arm hides the red part
    np.testing.assert_allclose(f[0:3], [0.6, -0.1, 0.07])
    assert f[14:] == [1.0, 1.0, 0.0]
    assert obs.target_state()["type"] == "red_cube"


def test_bin_sort_refuses_a_class_without_its_bin():
    with pytest.raises(PerceptionError, match="one bin per class"):
        BinSortObserver([RED, DISC], ["red_bin"], [RED_BIN], TOTE, 0.05, 3)
    with pytest.raises(PerceptionError, match=r"name bins \['green_bin'\]"):
        BinSortObserver([RED], ["green_bin"], [RED_BIN], TOTE, 0.05, 3)


def test_yaw_relative_to_the_tool_wraps_by_the_parts_symmetry():
    obs = sorter()
    f = obs.observe([seen(RED, 0.5, 0.0, 0.07, yaw=0.7)], robot(tool=(0.5, 0.0, 0.3), yaw=-0.2), time=0.0)
    assert f[3] == pytest.approx(0.9 - math.pi / 2)  # a square box looks the same every quarter turn


def test_a_grasp_is_read_from_the_jaws_resting_the_parts_width_apart():
    from perception.observers import gripping

    width = 0.04
    assert not gripping(robot(opening=0.07, grip=1.0), width)  # still closing: nothing between the jaws yet
    assert gripping(robot(opening=0.041, grip=1.0), width)  # resting on the part
    assert not gripping(robot(opening=0.005, grip=1.0), width)  # closed on nothing
    assert not gripping(robot(opening=0.041, grip=-1.0), width)  # opening


def test_a_held_part_sits_centred_in_the_jaws_and_is_never_pushed_through_the_belt():
    obs = conveyor()
    obs.observe([seen(CUBE, 0.503, -0.198, 0.12)], robot(tool=(0.5, -0.2, 0.125)), BELT, time=0.0)
    obs.observe([], robot(tool=(0.5, -0.2, 0.125), opening=0.041, grip=1.0), BELT, time=DT)
    np.testing.assert_allclose(obs.part_state()["position"], [0.5, -0.2, 0.12], atol=1e-9)  # centred, at its height
    # The jaws press on down: the part stays on the belt (its centre at belt top + half its height).
    obs.observe([], robot(tool=(0.5, -0.2, 0.1), opening=0.041, grip=1.0), BELT, time=2 * DT)
    np.testing.assert_allclose(obs.part_state()["position"], [0.5, -0.2, BELT_TOP + 0.02], atol=1e-9)
