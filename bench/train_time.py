"""Time-to-success of the shipped training preset: wall-clock and env steps until evaluation first
reaches a target success rate (50 evaluation episodes each time).

    python bench/train_time.py reach [--seeds 3] [--workers 1] [--target 0.95] [--device cpu] [--obs pixels] [--json PATH]

Each seed trains in its own process (--workers: that many side by side, each on one thread) (`genba train SCENARIO --stop-at-success TARGET`, the preset as
shipped, evaluation on 50 fresh episodes). Reported per seed:
  wall_s      seconds from the start of training (env construction, demo recording, fitting, and the
              evaluations themselves all count; Python start-up and imports do not) to the end of the
              first evaluation at or above the target;
  process_s   the whole process, imports included;
  env_steps   env steps used for learning up to then (expert demos + DAgger rollouts for BC presets,
              training steps for RL presets; evaluation episodes are not counted).
With --final-episodes N, each seed's best snapshot is then evaluated on N episodes that no training run
saw (`genba eval --seed 59000000`: episode i on seed 60,000,000 + i, the episodes of bench/obs_comparison.py;
training evaluates on 1,000,000 x (seed + 1) + ..., demos on seeds below 1,000,000).
Timings depend on the machine and on whatever else runs on it; the targets below are for 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from genba.jsonfile import write_json

REPO = Path(__file__).resolve().parents[1]
# (success target, wall-clock budget in seconds) on the 2-core reference machine
TARGETS = {"reach": (0.95, 30.0), "conveyor-pick": (0.90, 20 * 60.0), "bin-sort": (0.90, 10 * 60.0),
           ("conveyor-pick", "pixels"): (0.90, 60 * 60.0), ("bin-sort", "pixels"): (0.90, 60 * 60.0)}
EVAL_EPISODES = 50
FINAL_EVAL_SEED = 59_000_000  # genba eval --seed: episode i on 1,000,000 + this + i, beyond every training seed


def run_seed(scenario: str, seed: int, target: float, device: str, algo: str | None, obs: str | None, timeout: float,
             workdir: Path, final_episodes: int = 0) -> dict:
    out = workdir / f"{scenario}{'-' + obs if obs else ''}-s{seed}"
    cmd = [sys.executable, "-m", "genba", "train", scenario, "--seed", str(seed), "--out", str(out),
           "--device", device, "--stop-at-success", str(target), "--set", f"eval_episodes={EVAL_EPISODES}", "--no-progress"]
    if algo:
        cmd += ["--algo", algo]
    if obs:
        cmd += ["--obs", obs]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "timed out"
    process_s = time.monotonic() - start
    evals = []
    log = out / "eval.jsonl"
    if log.is_file():
        evals = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    hit = next((e for e in evals if e["success_rate"] >= target), None)
    final = final_eval(out, obs, final_episodes, env) if final_episodes and (out / "best").is_dir() else None
    return {
        "seed": seed, "reached": hit is not None, "wall_s": hit["wall_s"] if hit else None,
        "env_steps": hit["steps"] if hit else None, "success_rate": hit["success_rate"] if hit else None,
        "success_ci95": hit["success_ci95"] if hit else None,
        "best_success": max((e["success_rate"] for e in evals), default=None), "evaluations": len(evals),
        "process_s": round(process_s, 2), "returncode": rc, "error": None if rc == 0 else err.strip().splitlines()[-1:] ,
        "run": str(out), "final_eval": final,
    }


def final_eval(run: Path, obs: str | None, episodes: int, env: dict) -> dict:
    """The run's best snapshot on `episodes` unseen episodes (success, interval, cycle time, collisions)."""
    out = run / "final_eval.json"
    cmd = [sys.executable, "-m", "genba", "eval", str(run), "-n", str(episodes), "--seed", str(FINAL_EVAL_SEED),
           "--json", str(out)] + (["--obs", obs] if obs else [])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(out.read_text())
    keep = ("episodes", "success_rate", "success_ci95", "mean_cycle_time_s", "collisions_per_episode", "failures", "task_kpis",
            "seed")
    return {k: result.get(k) for k in keep}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="train seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    p.add_argument("--workers", type=int, default=1, help="seeds trained side by side (one thread each)")
    p.add_argument("--target", type=float, default=None, help="success rate to reach (default per scenario)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget to judge against (default per scenario)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--algo", default=None, help="preset block to run (default: the preset's default_algo)")
    p.add_argument("--obs", default=None, help="observation mode: state | perceived | pixels (default: the preset's)")
    p.add_argument("--final-episodes", type=int, default=0, help="then evaluate each seed's best on this many unseen episodes")
    p.add_argument("--keep", type=Path, default=None, help="keep run directories here (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if min(args.seeds, args.workers) < 1:
        p.error("--seeds and --workers must be positive")
    if args.first_seed < 0:
        p.error("--first-seed must be 0 or more")

    target, budget = TARGETS.get((args.scenario, args.obs), TARGETS.get(args.scenario, (0.9, 600.0)))
    target = args.target if args.target is not None else target
    budget = args.budget_s if args.budget_s is not None else budget
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="train_time."))
    workdir.mkdir(parents=True, exist_ok=True)

    def train(seed: int) -> dict:  # printed as each seed finishes
        row = run_seed(args.scenario, seed, target, args.device, args.algo, args.obs, timeout=max(3 * budget, 120), workdir=workdir,
                       final_episodes=args.final_episodes)
        shown = f"{row['wall_s']:.1f} s, {row['env_steps']:,} env steps, success {row['success_rate']:.0%}" if row["reached"] else \
            f"not reached (best {row['best_success']}, rc {row['returncode']}, {row['error']})"
        print(f"{args.scenario} seed {seed}: {shown} (process {row['process_s']:.1f} s)", flush=True)
        final = row["final_eval"]
        if final and "error" not in final:
            low, high = final["success_ci95"]
            print(f"  best snapshot on {final['episodes']} unseen episodes: success {final['success_rate']:.1%} "
                  f"[{low:.1%}, {high:.1%}], cycle time {final['mean_cycle_time_s']} s, failed {final['failures']['time_limit']} out "
                  f"of time and {final['failures']['task_end']} ended by the task", flush=True)
        elif final:
            print(f"  final evaluation failed: {final['error']}", flush=True)
        return row

    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(train, range(args.first_seed, args.first_seed + args.seeds)))
    reached = [r for r in rows if r["reached"]]
    walls = [r["wall_s"] for r in reached]
    summary = {
        "scenario": args.scenario, "target_success": target, "budget_s": budget, "eval_episodes": EVAL_EPISODES,
        "device": args.device, "obs": args.obs, "seeds": args.seeds, "first_seed": args.first_seed, "reached": len(reached),
        "median_wall_s": statistics.median(walls) if walls else None, "max_wall_s": max(walls) if walls else None,
        "median_env_steps": statistics.median([r["env_steps"] for r in reached]) if reached else None,
        "all_within_budget": len(reached) == len(rows) and max(walls) <= budget, "runs": rows,
        "workers": args.workers, "cpu_count": os.cpu_count(),
    }
    verdict = "PASS" if summary["all_within_budget"] else "FAIL"
    if walls:
        print(f"{verdict}: {len(reached)}/{len(rows)} seeds reached {target:.0%}; wall median {summary['median_wall_s']:.1f} s, "
              f"max {summary['max_wall_s']:.1f} s (budget {budget:.0f} s); env steps median {summary['median_env_steps']:,.0f}")
    else:
        print(f"{verdict}: no seed reached {target:.0%}")
    write_json(args.json, summary)
    return 0 if summary["all_within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
