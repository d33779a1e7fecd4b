"""The policies CLI verbs end to end on real envs: demos, eval (with --json and --video), export, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genba.cli import app
from policies.bundle import load_bundle
from policies.export import export_bundle
from policies.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory) -> Path:
    """An untrained SAC on the genba reach cell, exported with the env's feature spec."""
    from stable_baselines3 import SAC

    from policies.envs import feature_spec, make_env, scenario_info

    env = make_env("reach")
    model = SAC("MultiInputPolicy", env, policy_kwargs={"net_arch": [16]}, buffer_size=10, seed=0, device="cpu")
    path = export_bundle(model, tmp_path_factory.mktemp("b") / "reach", feature_spec=feature_spec(env),
                         scenario=scenario_info("reach", env))
    env.close()
    return path


def test_reach_bundle_manifest_describes_the_cell(reach_bundle):
    m = load_bundle(reach_bundle).manifest
    assert m["action"]["kind"] == "ee_delta" and m["action"]["dim"] == 5
    assert [f["name"] for f in m["action"]["features"]] == ["tool_delta_position", "tool_delta_yaw", "grip"]
    assert m["action"]["features"][0]["scale"] > 0  # the env's per-feature scale is kept
    assert m["observation"]["layout"]["order"] == ["observation", "achieved_goal", "desired_goal"]
    assert m["robot"]["model"] == "panda" and len(m["robot"]["joint_lower"]) == len(m["robot"]["joint_names"]) == 7
    from scenarios import load_scenario, scenario_hash

    assert m["scenario"] == {"name": "reach", "sha256": scenario_hash(load_scenario("reach"))}
    assert m["control_hz"] == load_scenario("reach").physics.control_hz


def test_eval_bundle_json_and_video(cli, reach_bundle, tmp_path):
    import cv2

    video, report = tmp_path / "eval.mp4", tmp_path / "eval.json"
    out = cli("eval", str(reach_bundle), "-n", "2", "--video", str(video), "--video-episodes", "1", "--json", str(report))
    data = json.loads(report.read_text())
    assert data["episodes"] == 2 and data["scenario"] == "reach" and data["kind"] == "bundle"
    assert 0 <= data["success_ci95"][0] <= data["success_rate"] <= data["success_ci95"][1] <= 1
    assert "success" in out.output and "reach" in out.output
    cap = cv2.VideoCapture(str(video))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    # one episode recorded (the reset frame plus one per step), not both
    from scenarios import load_scenario

    assert 2 <= frames <= load_scenario("reach").max_episode_steps + 1


def test_demos_then_bc_then_export_via_cli(cli, tmp_path):
    demos, run, bundle = tmp_path / "d.npz", tmp_path / "run", tmp_path / "bundle"
    cli("demos", "toy-reach", "-n", "20", "-o", str(demos), "--no-progress")
    cli("train", "toy-reach", "--algo", "bc", "--demos", str(demos), "--out", str(run), "--no-progress",
        "--set", "eval_episodes=20", "--json", str(tmp_path / "train.json"))
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["algo"] == "bc" and summary["best_success"] >= 0.8
    cli("export", str(run), "-o", str(bundle))
    b = load_bundle(bundle)
    assert b.manifest["training"]["algo"] == "bc" and b.manifest["policy"]["observation_normalization"]["folded"]
    report = tmp_path / "e.json"
    cli("eval", str(bundle), "-n", "20", "--json", str(report))
    assert json.loads(report.read_text())["success_rate"] >= 0.8  # the bundle acts like the run it came from


def test_demos_named_without_npz_refuse_to_overwrite_the_npz_and_are_readable_by_others(cli, tmp_path):
    """-o d wrote d.npz over an existing d.npz without --force (the check looked at d); files were 0600."""
    cli("demos", "toy-reach", "-n", "2", "-o", str(tmp_path / "d"), "--no-progress")
    written = tmp_path / "d.npz"
    assert written.stat().st_mode & 0o777 == 0o644
    before = written.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "genba", "demos", "toy-reach", "-n", "3", "-o", str(tmp_path / "d"),
                           "--seed", "5", "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f"{written} exists; pass --force to overwrite it" in proc.stderr
    assert written.read_bytes() == before


def test_user_errors_are_one_line_and_exit_1(tmp_path):
    cases = [
        (["train", "toy-target", "--algo", "sacc", "--out", str(tmp_path / "x")], "did you mean 'sac'"),
        (["eval", str(tmp_path)], "not a run directory, snapshot or bundle"),
        (["train", "toy-target", "--resume"], "--resume needs --out"),
        (["demos", "toy-target", "-n", "0", "-o", str(tmp_path / "d.npz")], "-n must be >= 1"),
        (["train", "toy-target", "--resume", "--out", str(tmp_path / "none")], "not a run directory"),
        # a path that cannot be made (under a file): was a traceback
        (["export", str(tmp_path / "nothing"), "-o", str(tmp_path / "a-file" / "b")], "not a run directory"),
        (["train", "toy-target", "--out", str(tmp_path / "a-file" / "run")], "a-file/run: Not a directory"),
        (["eval", str(tmp_path / "run.log")], "not a run directory, snapshot or bundle"),
    ]
    (tmp_path / "a-file").write_text("")
    (tmp_path / "run.log").write_text("")
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "genba", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(
            ("pybullet build time", "preset: ", "run directory: "))]  # what train says before it starts
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_an_output_file_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    """--json and demos -o are checked when the command starts (they failed with a traceback after the work)."""
    (tmp_path / "a-file").write_text("")
    cases = [
        (["expert", "toy-target", "-n", "1", "--json", str(tmp_path)], "is a directory; give a file name"),
        (["expert", "toy-target", "-n", "1", "--json", str(tmp_path / "a-file" / "x.json")], "is a file, so"),
        (["demos", "toy-target", "-n", "1", "-o", str(tmp_path / "a-file" / "d.npz")], "is a file, so"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "genba", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in " ".join(proc.stderr.replace("│", " ").split()), (args, proc.stderr)  # rich's box
        assert "episodes" not in proc.stderr and "Traceback" not in proc.stderr  # refused before recording anything


def test_a_run_of_a_scenario_file_works_from_any_folder(tmp_path):
    """The run kept the scenario path as typed, relative to the folder it was trained in: eval and export from
    elsewhere said 'no such scenario file', and --resume refused the same file named another way."""
    import os
    import shutil

    cell = tmp_path / "Zelle 1"
    cell.mkdir()
    shutil.copy(REPO / "scenarios" / "reach.yaml", cell / "my reach.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def genba(cwd, *args):
        proc = subprocess.run([sys.executable, "-m", "genba", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        return proc

    genba(cell, "train", "my reach.yaml", "--algo", "bc", "--out", "run", "--no-progress", "--set", "bc.rounds=0",
          "--set", "bc.demo_episodes=5", "--set", "eval_episodes=2")
    assert RunDir(cell / "run").config().scenario == str(cell / "my reach.yaml")
    assert "success" in genba(tmp_path, "eval", "Zelle 1/run", "-n", "2").stdout
    genba(tmp_path, "export", "Zelle 1/run", "-o", "bundle")
    genba(tmp_path, "train", "Zelle 1/my reach.yaml", "--out", "Zelle 1/run", "--resume", "--no-progress")

    # The cell file moved (or the run went to another machine): eval and export say so and take --scenario.
    (cell / "my reach.yaml").rename(tmp_path / "moved.yaml")
    gone = subprocess.run([sys.executable, "-m", "genba", "export", "Zelle 1/run", "-o", "b2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert gone.returncode != 0 and f"trained on {cell / 'my reach.yaml'}, which is not there any more; pass the cell file " \
        "where it is now with --scenario" in gone.stderr
    genba(tmp_path, "export", "Zelle 1/run", "-o", "b2", "--scenario", "moved.yaml")
    assert load_bundle(tmp_path / "b2").manifest["scenario"] == load_bundle(tmp_path / "bundle").manifest["scenario"]
    other = subprocess.run([sys.executable, "-m", "genba", "export", "Zelle 1/run", "-o", "b3", "--scenario", "conveyor-pick"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "conveyor-pick gives (33,), so it is not the cell this run was trained on" in other.stderr
    resumed = genba(tmp_path, "train", "moved.yaml", "--out", "Zelle 1/run", "--resume", "--no-progress")
    assert f"the run goes on with {tmp_path / 'moved.yaml'}" in resumed.stderr
    assert RunDir(cell / "run").config().scenario == str(tmp_path / "moved.yaml")
    assert "success" in genba(tmp_path, "eval", "Zelle 1/run", "-n", "1").stdout  # as the run now records it


def test_a_bundle_of_a_users_cell_file_is_not_run_on_the_built_in_cell_of_its_name(tmp_path):
    """A copy of reach.yaml (name: reach) with other episodes: `genba eval BUNDLE` ran the built-in reach without a word;
    with a name of its own it failed on 'unknown scenario'. The manifest's sha256 of the file now decides."""
    import yaml

    from policies.config import resolve_config
    from policies.evaluate import evaluate
    from policies.policy import PolicyLoadError
    from policies.run_export import export_run
    from policies.train import train

    data = yaml.safe_load((REPO / "scenarios" / "reach.yaml").read_text())
    data["max_episode_steps"] = 12
    for name in ("reach", "my-cell"):
        data["name"] = name
        cell = tmp_path / f"{name}.yaml"
        cell.write_text(yaml.safe_dump(data))
        run = tmp_path / f"run-{name}"
        train(resolve_config(str(cell), "bc", {"eval_episodes": 1, "bc": {"rounds": 0, "demo_episodes": 3, "iterations": 50}}),
              run, progress=False)
        bundle = export_run(run, tmp_path / f"bundle-{name}")
        message = "differs from the built-in reach" if name == "reach" else "not a built-in cell"
        with pytest.raises(PolicyLoadError, match=f"trained on a scenario file.*{message}.*pass .* --scenario"):
            evaluate(bundle, n=1)
        result, desc = evaluate(bundle, n=2, scenario=str(cell))
        assert result.episodes == 2 and result.mean_episode_steps <= 12


def test_progress_bars_only_on_a_terminal_unless_asked(tmp_path):
    """Redirected to a log, a bar was lines of carriage returns (and cursor moves); --progress still forces it."""
    def stderr_of(*extra):
        proc = subprocess.run([sys.executable, "-m", "genba", "demos", "toy-reach", "-n", "3", "-o", str(tmp_path / "d"),
                               "--force", *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    assert "demos:" not in stderr_of()
    assert "demos: 100%" in stderr_of("--progress")
