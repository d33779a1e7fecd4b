"""`genba robustness`: suites, magnitudes, rows, and a real report (sim and through the bridge) with its chart."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from twin_support import ENV, ROOT, clone_reach_bundle

from genba.robustness.suite import SuiteError, load_suite, scale_magnitude


def write_suite(tmp_path, **fields):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "test", **fields}, sort_keys=False))
    return path


def test_a_magnitude_scales_the_deviation_from_nominal():
    assert scale_magnitude("part_mass_scale", [0.8, 1.2], 2.0) == pytest.approx([0.6, 1.4])  # about 1
    assert scale_magnitude("joint_damping", [0.0, 0.1], 2.0) == pytest.approx([0.0, 0.2])  # about 0
    assert scale_magnitude("actuator_delay", [0, 1], 2.0) == [0, 2]  # whole periods stay whole
    assert scale_magnitude("noise", {"tool_position": 0.001}, 3.0) == {"tool_position": pytest.approx(0.003)}


def test_the_shipped_suite_gives_nominal_each_factor_at_each_magnitude_and_all_together():
    suite = load_suite("shop-floor", "conveyor-pick")  # every row validated on the cell
    rows = suite.rows()
    assert rows[0].nominal and rows[0].factor == "nominal"
    assert [r.factor for r in rows[1:-1]] == [name for name in suite.factors for _ in suite.magnitudes]
    assert rows[-1].factor == "all factors"
    everything = {f"{s}.{k}" for s, factors in rows[-1].randomization.items() for k in factors}
    assert everything == {key for keys in suite.factors.values() for key in keys}
    bridge_rows = suite.rows(through_bridge=True)[len(rows):]
    assert {r.factor for r in bridge_rows} == {*suite.bridge, "bridge faults", "all + bridge"}
    assert all(r.nominal for r in bridge_rows if r.factor in suite.bridge)  # faults alone: the cell stays nominal
    assert bridge_rows[-1].faults == {"latency_ms": 5.0, "jitter_ms": 2.0, "drop_rate": 0.01}


def test_the_groups_suite_puts_every_profile_key_in_exactly_one_group():
    suite = load_suite("shop-floor-groups", "conveyor-pick")
    grouped = [key for keys in suite.factors.values() for key in keys]
    assert sorted(grouped) == sorted(f"{section}.{key}" for section, keys in suite.profile.items() for key in keys)
    assert len(grouped) == len(set(grouped))


@pytest.mark.parametrize("fields, message", [
    ({"profile": "shop-floor", "factors": {"mass": ["dynamics.part_mas_scale"]}}, "does not declare"),
    ({"profile": "no-such-profile"}, "no-such-profile"),
    ({"randomization": {"sensing": {"frame_drop": 0.6}}}, "frame_drop"),  # 1.2 at 2x is no probability
    ({"randomization": {"dynamics": {"part_mass_scale": [0.4, 1.0]}}}, "part_mass_scale"),  # 2x: -0.2
    ({"randomization": {"gravity": {"g": 1}}}, "gravity"),
    ({"profile": "shop-floor", "bridge": {"lag": {"latency_s": 1}}}, "latency_s"),
    ({"profile": "shop-floor", "magnitudes": [0]}, "magnitudes"),
    # found only when the row's turn came, after the rows before it had run
    ({"profile": "shop-floor", "bridge": {"loss": {"drop_rate": 0.6}}}, r"row 'loss x2': faults must be .* drop rate in \[0, 1\]"),
    ({"profile": "shop-floor", "bridge": {"lag": {"latency_ms": float("nan")}}}, r"row 'lag x1': faults must be finite"),
    ({}, "exactly one of"),
])
def test_a_bad_suite_is_refused_before_any_episode_with_what_and_where(tmp_path, fields, message):
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(write_suite(tmp_path, **fields), "conveyor-pick")
    assert "suite.yaml" in str(info.value)


def test_a_chart_name_matplotlib_cannot_write_is_refused_before_any_episode(tmp_path):
    """--plot report.txt ran the whole suite, then failed with matplotlib's traceback."""
    proc = subprocess.run([sys.executable, "-m", "genba", "robustness", str(tmp_path / "no-bundle"), "--plot",
                           str(tmp_path / "report.txt")], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "give a .png, .svg or .pdf name" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_suite_name_lists_the_shipped_ones():
    with pytest.raises(SuiteError, match="shop-floor"):
        load_suite("shop-flor")


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory):
    return clone_reach_bundle(tmp_path_factory.mktemp("reach"), demo_episodes=60, iterations=1500, eval_episodes=5)


def run_robustness(bundle, suite, out, *extra):
    proc = subprocess.run(
        [sys.executable, "-m", "genba", "robustness", str(bundle), "--suite", str(suite), "--episodes", "12",
         "--json", str(out / "report.json"), "--plot", str(out / "report.png"), *extra],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), proc


def test_a_perturbation_that_blinds_the_policy_shows_as_lost_success_and_the_chart_shows_it(reach_bundle, tmp_path):
    # Reach acts on where it sees its tool: 8 cm of noise on that reading (16 cm at 2x) must cost success.
    suite = write_suite(tmp_path, randomization={"sensing": {"noise": {"tool_position": 0.08}}}, magnitudes=[1])
    report, proc = run_robustness(reach_bundle, suite, tmp_path, "--workers", "2", "--magnitudes", "1,2")
    rows = {r["label"]: r for r in report["rows"]}
    assert report["complete"] and list(rows) == ["nominal", "sensing.noise x1", "sensing.noise x2", "all factors x1"]
    assert rows["nominal"]["success_rate"] >= 0.75  # a quick clone: 11 of 12 here
    assert rows["sensing.noise x2"]["success_rate"] <= rows["nominal"]["success_rate"] - 0.3
    assert rows["sensing.noise x2"]["loss_points"] == pytest.approx(
        100 * (rows["nominal"]["success_rate"] - rows["sensing.noise x2"]["success_rate"]), abs=0.1)
    assert "largest single-factor loss at x1" in proc.stdout

    from PIL import Image  # matplotlib's own dependency

    image = np.asarray(Image.open(tmp_path / "report.png").convert("L"), dtype=np.float32)
    assert image.shape == (int(100 * (1.2 + 0.32 * 4)), 800)  # the chart's size for 4 rows
    assert image.std() > 10  # bars, labels and axes, not a blank canvas

    from genba.robustness.chart import plot_report

    baseline = {**report, "bundle": "other-bundle", "rows": [{**r, "success_rate": 0.5} for r in report["rows"]]}
    beside = np.asarray(Image.open(plot_report(report, tmp_path / "beside.png", baseline=baseline)).convert("L"))
    assert beside.shape == image.shape and (beside != image).any()  # the baseline's bars and legend are drawn


def test_through_the_bridge_faults_are_rows_with_holds_and_drops_reported(reach_bundle, tmp_path):
    suite = write_suite(tmp_path, randomization={"dynamics": {"actuator_delay": [0, 1]}}, magnitudes=[1],
                        bridge={"dropped replies": {"drop_rate": 0.3}})
    report, _ = run_robustness(reach_bundle, suite, tmp_path, "--through-bridge", "--workers", "1")
    rows = {r["label"]: r for r in report["rows"]}
    assert list(rows) == ["nominal", "dynamics.actuator_delay x1", "all factors x1", "dropped replies x1",
                          "bridge faults x1", "all + bridge x1"]
    assert rows["nominal"]["dropped_replies"] == 0 and rows["nominal"]["watchdog_holds"] == 0
    assert rows["dropped replies x1"]["dropped_replies"] > 0
    assert rows["dropped replies x1"]["watchdog_holds"] > 0  # a lost reply holds the arm
    assert rows["nominal"]["success_rate"] >= 0.75  # a quick clone: 11 of 12 here


def test_bridge_only_runs_the_nominal_cell_under_each_bridge_fault(reach_bundle, tmp_path):
    suite = write_suite(tmp_path, randomization={"dynamics": {"actuator_delay": [0, 1]}}, magnitudes=[1],
                        bridge={"latency": {"latency_ms": 5.0}, "dropped replies": {"drop_rate": 0.3}})
    report, _ = run_robustness(reach_bundle, suite, tmp_path, "--bridge-only", "--workers", "1")
    assert [r["label"] for r in report["rows"]] == ["nominal", "latency x1", "dropped replies x1", "bridge faults x1"]
    assert all(r["randomization"] == {} for r in report["rows"])
    latency = report["rows"][1]
    assert latency["added_latency_ms"] == pytest.approx(5.0 * latency["control_steps"], rel=0.01)  # 5 ms before each request
    assert report["rows"][0]["added_latency_ms"] == 0
