"""A user's own scenario file trains with the preset of its task type, scaled to its episode length and part
count, and `genba train` says which preset it used (issue 15).

The variant is what a new user makes of conveyor-pick.yaml: a faster belt, two parts per episode, bigger and
heavier parts, a moved bin, the GP7, and a longer episode so two parts fit. The scripted expert places both
parts in 10 of 10 episodes on it (state and perceived observations).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from policies.config import PRESET_DIR, find_preset, preset_note, resolve_config, scale_preset
from scenarios import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "scenarios"


def write_variant(path: Path, base: str = "conveyor-pick", **changes) -> Path:
    """`base`'s shipped file with `changes` (dotted keys) applied, written to `path`."""
    data = yaml.safe_load((SHIPPED / f"{base}.yaml").read_text())
    for key, value in changes.items():
        node, *parents_leaf = data, *key.split(".")
        *parents, leaf = parents_leaf
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def user_cell(path: Path) -> Path:
    return write_variant(path, **{"name": "my-cell", "robot.model": "gp7", "max_episode_steps": 400,
                                  "conveyor.belt_speed": 0.15, "parts.count": 2, "parts.size": [0.05, 0.05, 0.05],
                                  "parts.mass": 0.2, "bins": [{"name": "out_bin", "position": [0.3, 0.5, 0.0],
                                                               "size": [0.22, 0.22], "wall_height": 0.08}]})


def test_a_user_cell_gets_the_preset_of_its_task_type_scaled(tmp_path):
    path = user_cell(tmp_path / "my-cell.yaml")
    choice = find_preset(str(path))
    assert choice.path == PRESET_DIR / "conveyor-pick.yaml"
    assert (choice.task_type, choice.ref_steps, choice.ref_parts, choice.steps, choice.parts) == ("conveyor_pick", 240, 1, 400, 2)
    cfg, shipped = resolve_config(str(path)), resolve_config("conveyor-pick")
    # Env-step counts scale with the episode length; with more parts per episode the episode counts stay.
    assert (cfg.algo, cfg.obs_mode) == ("bc", "perceived")
    assert cfg.eval_freq == round(shipped.eval_freq * 400 / 240) and cfg.checkpoint_freq == round(shipped.checkpoint_freq * 400 / 240)
    assert cfg.bc == shipped.bc
    assert cfg.preset == ("policies/presets/conveyor-pick.yaml (task type conveyor_pick, tuned for 240-step episodes with "
                          "1 part; this cell: 400 steps, 2 parts: eval_freq 10000 -> 16667, checkpoint_freq 20000 -> 33333)")
    # --set still has the last word, and scaling never touches what it sets.
    assert resolve_config(str(path), overrides={"eval_freq": 123}).eval_freq == 123


def test_fewer_parts_per_episode_get_more_episodes(tmp_path):
    path = write_variant(tmp_path / "half-pallet.yaml", "palletize", **{"parts.count": 4, "max_episode_steps": 330})
    cfg, shipped = resolve_config(str(path)), resolve_config("palletize")
    assert (cfg.bc.demo_episodes, cfg.bc.round_episodes) == (2 * shipped.bc.demo_episodes, 2 * shipped.bc.round_episodes)
    assert cfg.eval_freq == shipped.eval_freq // 2
    assert "bc.demo_episodes 60 -> 120" in cfg.preset


def test_a_copy_of_a_shipped_cell_trains_like_it_whatever_its_name(tmp_path):
    for name, scn_name in (("conveyor-pick.yaml", "conveyor-pick"), ("renamed.yaml", "my-line-3")):
        path = write_variant(tmp_path / name, **{"name": scn_name})
        cfg, shipped = resolve_config(str(path)), resolve_config("conveyor-pick")
        assert {**cfg.to_dict(), "scenario": None} == {**shipped.to_dict(), "scenario": None}
        assert cfg.preset.endswith("(task type conveyor_pick, tuned for 240-step episodes with 1 part, like this cell)")
    # A preset given with --preset is taken as it is.
    given = resolve_config(str(path), preset_file=PRESET_DIR / "conveyor-pick.yaml")
    assert given.eval_freq == 10000 and given.preset == "policies/presets/conveyor-pick.yaml (given with --preset)"


def test_scaling_rule_and_note_without_a_preset():
    from policies.config import PresetChoice

    choice = PresetChoice(Path("x.yaml"), "bin_sort", ref_steps=300, ref_parts=3, steps=150, parts=1)
    data, changes = scale_preset({"steps": 3000, "bc": {"demo_episodes": 10, "round_episodes": 5, "iterations": 7}}, choice)
    assert data == {"steps": 1500, "bc": {"demo_episodes": 30, "round_episodes": 15, "iterations": 7}}
    assert changes == ["steps 3000 -> 1500", "bc.demo_episodes 10 -> 30", "bc.round_episodes 5 -> 15"]
    assert preset_note(PresetChoice(None, "new_task"), None, []) == "none (generic defaults; no shipped preset for task type new_task)"
    assert load_scenario("conveyor-pick").parts.count == 1  # the reference the conveyor-pick numbers above assume


def test_plain_train_of_a_user_cell_reaches_90_percent(tmp_path):
    """`genba train FILE` with no algorithm flags; --set shrinks only sizes (and trains on state: perceived costs
    ~7x the env time). The preset's DART demonstrations reach >= 90% where generic BC defaults gave 80%."""
    path = user_cell(tmp_path / "my-cell.yaml")
    out, summary_json = tmp_path / "run", tmp_path / "summary.json"
    sizes = ["obs_mode=state", "bc.demo_episodes=120", "bc.iterations=3000", "bc.rounds=0", "eval_episodes=20"]
    proc = subprocess.run([sys.executable, "-m", "genba", "train", str(path), "--out", str(out), "--json", str(summary_json),
                           "--no-progress", *[a for s in sizes for a in ("--set", s)]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("preset: "))
    assert line.startswith("preset: policies/presets/conveyor-pick.yaml (task type conveyor_pick")
    assert yaml.safe_load((out / "config.yaml").read_text())["preset"] == line.removeprefix("preset: ")
    summary = json.loads(summary_json.read_text())
    assert summary["algo"] == "bc" and summary["final_eval"]["success_rate"] >= 0.9, summary
