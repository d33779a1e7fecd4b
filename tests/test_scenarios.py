"""Scenario files: every kind of bad input gets an error naming file, key path, value and a suggestion."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scenarios import ScenarioError, builtin_names, load_scenario, parse_scenario, scenario_hash
from scenarios.loader import BUILTIN_DIR


def base() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "conveyor-pick.yaml").read_text())


def write(tmp_path: Path, data, name="cell.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def error_of(tmp_path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    message = str(exc.value)
    assert str(path) in message, message
    return message


def test_builtins_are_valid_and_hash_is_stable():
    assert set(builtin_names()) >= {"reach", "conveyor-pick"}
    for name in builtin_names():
        s = load_scenario(name)
        assert scenario_hash(s) == scenario_hash(parse_scenario(s.model_dump(mode="json")))


def test_hash_changes_with_content():
    a, b = base(), base()
    b["conveyor"]["belt_speed"] = 0.09
    assert scenario_hash(parse_scenario(a)) != scenario_hash(parse_scenario(b))


def test_unknown_top_level_key_suggests(tmp_path):
    data = base()
    data["robott"] = data.pop("robot")
    msg = error_of(tmp_path, data)
    assert "robott: unknown key (did you mean 'robot'?)" in msg
    assert "robot: Field required" in msg


def test_unknown_nested_key_suggests(tmp_path):
    data = base()
    data["conveyor"]["belt_sped"] = 0.1
    msg = error_of(tmp_path, data)
    assert "conveyor.belt_sped: unknown key (did you mean 'belt_speed'?)" in msg


def test_wrong_type_names_value(tmp_path):
    data = base()
    data["conveyor"]["belt_speed"] = "fast"
    msg = error_of(tmp_path, data)
    assert "conveyor.belt_speed:" in msg and "'fast'" in msg


def test_quoted_number_is_rejected(tmp_path):
    data = base()
    data["parts"]["mass"] = "0.1"
    msg = error_of(tmp_path, data)
    assert "parts.mass:" in msg and "'0.1'" in msg


def test_out_of_range(tmp_path):
    data = base()
    data["conveyor"]["belt_speed"] = 5.0
    msg = error_of(tmp_path, data)
    assert "conveyor.belt_speed: Input should be less than or equal to 2" in msg and "5.0" in msg


def test_unknown_robot_model_suggests(tmp_path):
    data = base()
    data["robot"]["model"] = "pnda"
    msg = error_of(tmp_path, data)
    assert "robot.model: unknown robot model 'pnda'" in msg and "did you mean 'panda'?" in msg


def test_unknown_task_type_suggests(tmp_path):
    data = base()
    data["task"]["type"] = "conveyer_pick"
    msg = error_of(tmp_path, data)
    assert "task.type: unknown task type 'conveyer_pick' (did you mean 'conveyor_pick'?)" in msg


def test_unknown_reward_term_suggests(tmp_path):
    data = base()
    data["task"]["reward"]["placd"] = 3.0
    msg = error_of(tmp_path, data)
    assert "task.reward.placd: unknown key (did you mean 'placed'?)" in msg


def test_substeps_must_be_whole(tmp_path):
    data = base()
    data["physics"] = {"physics_hz": 240, "control_hz": 25}
    msg = error_of(tmp_path, data)
    assert "physics: physics_hz / control_hz must be a whole number" in msg and "9.600" in msg


def test_task_bin_must_exist(tmp_path):
    data = base()
    data["task"]["bin"] = "out_bn"
    msg = error_of(tmp_path, data)
    assert "task.bin 'out_bn' is not a bin" in msg and "did you mean 'out_bin'?" in msg


def test_duplicate_names(tmp_path):
    data = base()
    data["fixtures"].append(dict(data["fixtures"][0]))
    msg = error_of(tmp_path, data)
    assert "repeated: ['light_curtain_post']" in msg


def test_inverted_range(tmp_path):
    data = base()
    data["randomization"]["first_arrival"] = [2.0, 1.0]
    msg = error_of(tmp_path, data)
    assert "first_arrival must be [low, high] with low <= high, got [2.0, 1.0]" in msg


def test_wrong_vector_length(tmp_path):
    data = base()
    data["robot"]["base_position"] = [0.0, 0.0]
    msg = error_of(tmp_path, data)
    assert "robot.base_position[2]: Field required" in msg


def test_conveyor_task_needs_conveyor(tmp_path):
    data = base()
    del data["conveyor"]
    msg = error_of(tmp_path, data)
    assert "'conveyor_pick' needs a 'conveyor' and 'parts' section" in msg


def test_yaml_syntax_error_has_line(tmp_path):
    msg = error_of(tmp_path, "name: x\nrobot: {model: panda\n")
    assert "not valid YAML" in msg and ":3:" in msg


@pytest.mark.parametrize("edit, where, got", [
    (lambda d: d["robot"].update(base_position=[float("nan"), 0.0, 0.0]), "robot.base_position[0]", "nan"),
    (lambda d: d["bins"][0].update(position=[0.5, float("inf"), 0.0]), "bins[0].position[1]", "inf"),
    (lambda d: d["parts"].update(spawn_interval=[float("nan"), 2.0]), "parts.spawn_interval[0]", "nan"),
    (lambda d: d["task"]["reward"].update(placed=float("-inf")), "task.reward.placed", "-inf"),
])
def test_nan_and_inf_are_refused_where_they_stand(tmp_path, edit, where, got):
    """They used to pass and crash deep in the sim (a NaN base pose: 'action has NaN' at the first step)."""
    data = base()
    edit(data)
    assert f"{where}: Input should be a finite number (got {got})" in error_of(tmp_path, data)


def test_a_cell_needs_a_camera(tmp_path):
    data = base()
    data["cameras"] = []  # validated once, then every verb hit an IndexError building the env
    assert "cameras: Tuple should have at least 1 item" in error_of(tmp_path, data)


def test_a_key_given_twice_is_an_error_with_its_line(tmp_path):
    text = (BUILTIN_DIR / "reach.yaml").read_text() + "max_episode_steps: 7\n"
    assert "max_episode_steps" in (BUILTIN_DIR / "reach.yaml").read_text()  # so the line above repeats it
    msg = error_of(tmp_path, text)
    assert f":{len(text.splitlines())}:1: not valid YAML (key 'max_episode_steps' is given twice in one mapping)" in msg


def test_yaml_merge_keys_still_override_what_they_merge(tmp_path):
    """`<<: *anchor` then a key of the anchor's is YAML's override, not a key given twice (the check once refused it)."""
    from scenarios.yamlfile import read_yaml

    path = write(tmp_path, "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert read_yaml(path, ScenarioError) == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}}


def test_exponent_numbers_read_as_numbers_as_in_yaml_1_2(tmp_path):
    """PyYAML (YAML 1.1) read 3e-4 and 1e30 as strings: `noise: 1e-3` was 'not a valid number'."""
    from scenarios.yamlfile import parse_yaml_value, read_yaml

    path = write(tmp_path, "a: 3e-4\nb: 1e30\nc: -2E+3\nd: .5e1\ne: 1.0e+2\nf: 1e\ng: e5\nh: '3e-4'\n")
    assert read_yaml(path, ScenarioError) == {"a": 3e-4, "b": 1e30, "c": -2000.0, "d": 5.0, "e": 100.0, "f": "1e", "g": "e5",
                                              "h": "3e-4"}
    assert parse_yaml_value("3e-4") == 3e-4 and parse_yaml_value("12") == 12 and parse_yaml_value("x1e3") == "x1e3"
    data = base()
    data["robot"]["max_ee_speed"] = "__SPEED__"
    text = yaml.safe_dump(data).replace("__SPEED__", "5e-1")
    assert load_scenario(write(tmp_path, text)).robot.max_ee_speed == 0.5


def test_bytes_that_are_not_utf8_and_a_directory_are_named(tmp_path):
    path = tmp_path / "cell.yaml"
    path.write_bytes((BUILTIN_DIR / "reach.yaml").read_bytes().replace(b"name:", b"\xff\xfename:", 1))
    with pytest.raises(ScenarioError, match=r"cell.yaml: not UTF-8 text \(byte 0xff at offset \d+\)"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=r"a directory, not a scenario file"):
        load_scenario(tmp_path)


def test_a_huge_value_is_shown_shortened(tmp_path):
    data = base()
    data["robot"]["max_ee_speed"] = 10**400
    msg = error_of(tmp_path, data)
    assert "robot.max_ee_speed: Input should be a valid number (got 1000000000" in msg and len(msg) < 300, msg
    # YAML aliases nest a list 6 deep under goal_low: 8^6 numbers were once echoed whole (megabytes of message). The
    # anchors sit under top-level keys of their own, which are refused as unknown keys without their values.
    anchors = "x0: &x0 [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]\n" + "".join(
        f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 8)}]\n" for i in range(1, 6))
    text = (BUILTIN_DIR / "reach.yaml").read_text().replace("goal_low: [0.35, -0.25, 0.05]", "goal_low: *x5")
    msg = error_of(tmp_path, anchors + text)
    assert "randomization.goal_low: Tuple should have at most 3 items" in msg and len(msg) < 2000, len(msg)


def test_top_level_must_be_mapping(tmp_path):
    msg = error_of(tmp_path, "- a\n- b\n")
    assert "top level must be a mapping" in msg


def test_unknown_builtin_name_suggests():
    with pytest.raises(ScenarioError, match="did you mean 'conveyor-pick'"):
        load_scenario("conveyor-pik")


def test_cli_validate_exit_codes_and_no_traceback(tmp_path):
    good = write(tmp_path, base(), "good.yaml")
    data = base()
    data["robot"]["model"] = "pnda"
    bad = write(tmp_path, data, "bad.yaml")
    cli = [sys.executable, "-m", "genba", "scenarios", "validate"]
    ok = subprocess.run(cli + [str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "ok: " in ok.stdout
    res = subprocess.run(cli + [str(good), str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "bad.yaml" in res.stderr and "did you mean 'panda'" in res.stderr


def test_user_file_works_where_builtin_name_does(tmp_path):
    import sim

    data = base()
    data["name"] = "my-cell"
    data["conveyor"]["belt_speed"] = 0.05
    env = sim.make_env(str(write(tmp_path, data)))
    assert env.scenario.name == "my-cell"
    assert env.task.conveyor.speed == pytest.approx(0.05)
    env.close()


def bin_sort() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "bin-sort.yaml").read_text())


def test_bin_sort_part_type_bin_must_exist(tmp_path):
    data = bin_sort()
    data["task"]["part_types"][1]["bin"] = "gren_bin"
    msg = error_of(tmp_path, data)
    assert "task.part_types[1].bin 'gren_bin' (type 'green_cube') is not a bin" in msg and "did you mean 'green_bin'?" in msg


def test_bin_sort_part_type_names_unique(tmp_path):
    data = bin_sort()
    data["task"]["part_types"].append(dict(data["task"]["part_types"][0]))
    msg = error_of(tmp_path, data)
    assert "part_types names must be unique; repeated: ['red_cube']" in msg


def test_bin_sort_needs_a_part_type(tmp_path):
    data = bin_sort()
    data["task"]["part_types"] = []
    msg = error_of(tmp_path, data)
    assert "part_types: Tuple should have at least 1 item" in msg


def test_bin_sort_unknown_shape(tmp_path):
    data = bin_sort()
    data["task"]["part_types"][0]["shape"] = "sphere"
    msg = error_of(tmp_path, data)
    assert "part_types[0].shape: Input should be 'box', 'cylinder' or 'mesh' (got 'sphere')" in msg


def test_bin_sort_cylinder_must_be_round(tmp_path):
    data = bin_sort()
    data["task"]["part_types"][2]["size"] = [0.04, 0.05, 0.05]
    msg = error_of(tmp_path, data)
    assert "part_types[2]: part type 'green_cylinder': a cylinder's size x and y are its diameter and must be equal, got [0.04, 0.05, 0.05]" in msg


def test_bin_sort_parts_must_fit_the_tote(tmp_path):
    data = bin_sort()
    data["task"]["parts_per_episode"] = 10
    msg = error_of(tmp_path, data)
    assert "parts_per_episode 10 do not fit 0.11 m apart in the tote's 0.200 x 0.200 m free area (at most 4)" in msg
    data = bin_sort()
    data["task"]["placement"]["wall_margin"] = 0.25
    msg = error_of(tmp_path, data)
    assert "placement.wall_margin 0.25 m leaves no room in a tote of inner size [0.44, 0.44] m" in msg


def test_bin_sort_tote_name_unique(tmp_path):
    data = bin_sort()
    data["task"]["tote"]["name"] = "red_bin"
    msg = error_of(tmp_path, data)
    assert "task.tote.name 'red_bin' is already the name of a table, fixture, bin or camera" in msg


def test_bin_sort_inverted_yaw_range_and_quoted_mass(tmp_path):
    data = bin_sort()
    data["task"]["placement"]["yaw"] = [1.0, -1.0]
    data["task"]["part_types"][3]["mass"] = "0.1"
    msg = error_of(tmp_path, data)
    assert "2 errors" in msg
    assert "placement.yaw: Value error, yaw must be [low, high]" not in msg and "yaw must be [low, high] with low <= high, got [1.0, -1.0]" in msg
    assert "part_types[3].mass:" in msg and "'0.1'" in msg


def test_bin_sort_errors_name_the_files_own_key_path_with_a_suggestion(tmp_path):
    data = bin_sort()
    data["task"]["reward"]["sortd"] = 10.0
    data["task"]["part_types"][0]["shape"] = "sphere"
    msg = error_of(tmp_path, data)
    assert "task.reward.sortd: unknown key (did you mean 'sorted'?); valid keys here: tool_to_part" in msg  # not task.bin_sort.reward
    assert "task.part_types[0].shape: Input should be 'box', 'cylinder' or 'mesh'" in msg
