"""RL fine-tuning against the script: does the fine-tuned policy beat the scripted expert's cycle time?

    python bench/finetune.py conveyor-pick [--seeds 3] [--bc RUN] [--minutes 60] [--workers 1] [--envs 1] [--steps N]
                             [--episodes 200] [--json PATH]

1. The BC start: --bc RUN, or a run of the shipped preset (`genba train CELL`, seed 0) trained here first.
2. Per seed: `genba train CELL --algo ppo --init BC --seed S` (the preset's `with_init` block: a residual
   correction on top of the frozen clone), stopped after --minutes of training (max_wall_s), or after --steps env
   steps if given first (default: no step limit, the time budget decides), with --envs collecting processes.
3. Expert, BC and every fine-tuned run's best snapshot on the same --episodes episodes that no training saw
   (episode i on seed 60,000,000 + i), in the fine-tuning's observation mode: success (95% Wilson interval),
   cycle time (mean over successful episodes, with a 95% t-interval), collisions per episode.
Verdict: PASS when at least 2 of the seeds reach success >= 95% at a mean cycle time >= 10% shorter than the
expert's. Each step runs in its own process; --workers runs that many seeds side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from genba.jsonfile import write_json

REPO = Path(__file__).resolve().parents[1]
FINAL_EVAL_SEED = 59_000_000  # genba eval --seed: episode i on 1,000,000 + this + i (bench/train_time.py's episodes)
EXPERT_SEED = 1_000_000 + FINAL_EVAL_SEED  # genba expert --seed: episode i on this + i, the same episodes
UNLIMITED_STEPS = 100_000_000  # more than any time budget here reaches
FASTER_BY = 0.10  # the target: cycle time at least this fraction shorter than the expert's
MIN_SUCCESS = 0.95
KEEP = ("episodes", "success_rate", "success_ci95", "mean_cycle_time_s", "cycle_time_ci95_s", "collisions_per_episode")


def genba(args: list[str], log: Path, timeout: float | None = None) -> float:
    """Run `python -m genba ARGS` (one thread), its output to `log`; the wall seconds it took."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "genba", *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:]
        raise RuntimeError(f"genba {' '.join(args[:2])} failed (rc {proc.returncode}): {tail}; log {log}")
    return time.monotonic() - start


def evaluation(kind: str, target: str, cell: str, obs: str, episodes: int, work: Path) -> dict:
    """One row: the expert (`genba expert`) or a run (`genba eval`) on the bench's unseen episodes."""
    out = work / f"eval-{kind}.json"
    if kind == "expert":
        args = ["expert", cell, "-n", str(episodes), "--seed", str(EXPERT_SEED), "--obs", obs, "--json", str(out)]
    else:
        args = ["eval", target, "-n", str(episodes), "--seed", str(FINAL_EVAL_SEED), "--obs", obs, "--json", str(out)]
    genba(args, work / f"eval-{kind}.log")
    result = json.loads(out.read_text())
    return {"policy": kind, "target": target, **{k: result.get(k) for k in KEEP}}


def fine_tune(cell: str, bc: Path, seed: int, minutes: float, steps: int, envs: int, work: Path) -> dict:
    run = work / f"finetune-s{seed}"
    summary = work / f"finetune-s{seed}.json"
    wall = genba(["train", cell, "--algo", "ppo", "--init", str(bc), "--seed", str(seed), "--out", str(run),
                  "--steps", str(steps), "--envs", str(envs),
                  "--set", f"max_wall_s={minutes * 60}", "--no-progress", "--json", str(summary)],
                 work / f"finetune-s{seed}.log", timeout=minutes * 60 * 2 + 600)
    info = json.loads(summary.read_text())
    return {"seed": seed, "run": str(run), "train_wall_s": info["wall_s"], "process_s": round(wall, 1),
            "env_steps": info["num_timesteps"], "env_steps_per_s": round(info["num_timesteps"] / info["wall_s"], 1)}


def line(row: dict) -> str:
    low, high = row["success_ci95"]
    cycle = row["mean_cycle_time_s"]
    return (f"{row['policy']:<16} success {row['success_rate']:6.1%} [{low:5.1%}, {high:5.1%}]  "
            f"cycle {'-' if cycle is None else f'{cycle:.2f} s'}  collisions/episode {row['collisions_per_episode']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cell")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--bc", type=Path, default=None, help="the BC run to start from (default: train the shipped preset first)")
    p.add_argument("--minutes", type=float, default=60.0, help="training budget per seed")
    p.add_argument("--workers", type=int, default=1, help="seeds trained side by side")
    p.add_argument("--envs", type=int, default=1, help="collecting env processes per seed (genba train --envs)")
    p.add_argument("--steps", type=int, default=UNLIMITED_STEPS, help="env steps per seed at most (default: the time budget decides)")
    p.add_argument("--episodes", type=int, default=200, help="evaluation episodes per policy")
    p.add_argument("--obs", default="state", help="observation mode of the evaluations (the preset fine-tunes on state)")
    p.add_argument("--keep", type=Path, default=None, help="keep runs and logs here (default: a temp dir, removed at the end)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if min(args.seeds, args.workers, args.envs, args.episodes, args.steps) < 1 or args.minutes <= 0:
        p.error("--seeds, --workers, --envs, --steps, --episodes and --minutes must be positive")
    work = args.keep or Path(tempfile.mkdtemp(prefix="finetune."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        verdict = _run(args, work)
    except BaseException:
        print(f"runs and logs so far: {work}", file=sys.stderr)
        raise
    if args.keep is None:  # the figures are in --json and the lines above; the runs took hundreds of MB of /tmp
        shutil.rmtree(work, ignore_errors=True)
    return 0 if verdict else 1


def _run(args: argparse.Namespace, work: Path) -> bool:

    bc = args.bc
    bc_wall = None
    if bc is None:
        bc = work / "bc"
        print(f"training the BC start (shipped preset) in {bc} ...", flush=True)
        bc_wall = genba(["train", args.cell, "--seed", "0", "--out", str(bc), "--no-progress"], work / "bc.log")
    print(f"fine-tuning {args.seeds} seed(s), {args.minutes:g} min each, {args.workers} at a time, {args.envs} env process(es) "
          f"each ...", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda s: fine_tune(args.cell, bc, s, args.minutes, args.steps, args.envs, work), range(args.seeds)))
    for r in runs:
        print(f"  seed {r['seed']}: {r['env_steps']:,} env steps in {r['train_wall_s']:.0f} s of training "
              f"({r['env_steps_per_s']:.0f}/s)", flush=True)

    print(f"evaluating on {args.episodes} unseen episodes ({args.obs} observations) ...", flush=True)
    expert = evaluation("expert", args.cell, args.cell, args.obs, args.episodes, work)
    rows = [expert, evaluation("bc", str(bc), args.cell, args.obs, args.episodes, work)]
    for r in runs:
        rows.append({**evaluation(f"finetune-s{r['seed']}", r["run"], args.cell, args.obs, args.episodes, work), **r})
    goal = expert["mean_cycle_time_s"] * (1 - FASTER_BY)
    passed = 0
    for row in rows:
        print(line(row))
        if row["policy"].startswith("finetune"):
            row["meets_target"] = bool(row["success_rate"] >= MIN_SUCCESS and row["mean_cycle_time_s"] is not None
                                       and row["mean_cycle_time_s"] <= goal)
            passed += row["meets_target"]
    need = min(2, args.seeds)
    verdict = passed >= need
    print(f"{'PASS' if verdict else 'FAIL'}: {passed}/{args.seeds} fine-tuned seeds at success >= {MIN_SUCCESS:.0%} and cycle time "
          f"<= {goal:.2f} s ({FASTER_BY:.0%} under the expert's {expert['mean_cycle_time_s']:.2f} s)")
    write_json(args.json, {"cell": args.cell, "obs": args.obs, "episodes": args.episodes, "minutes": args.minutes,
                           "workers": args.workers, "envs": args.envs, "steps": args.steps, "bc": str(bc), "bc_train_process_s": bc_wall, "target_cycle_time_s": goal,
                           "min_success": MIN_SUCCESS, "rows": rows, "passed_seeds": passed, "pass": verdict,
                           "cpu_count": os.cpu_count()})
    return verdict


if __name__ == "__main__":
    sys.exit(main())
