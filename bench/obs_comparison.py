"""Observation modes compared on one cell: a state policy on privileged and on perceived state, a pixel policy on pixels.

Rows (policy x observation mode), all on the same episodes (SEED_NOTE):
  (a) the state policy on `state`: the simulator's exact task features (privileged: no real cell has them);
  (b) the same state policy on `perceived`: the same layout, the task's features from the OpenCV part
      locator (perception.localize) on the cell's perception camera and the task's observer;
  (c) the pixel policy on `pixels`: camera images (fixed and wrist) and the robot's readings.
Per row: success with its 95% Wilson interval, mean cycle time of the successful episodes, collisions per
episode, and the CPU latency of one policy.act call (p50/p99 us) on observations recorded from the row's own
episodes (LATENCY_NOTE). The state policy's latency leaves out perception, measured apart per camera frame
(PERCEPTION_NOTE). A CUDA latency column appears only where torch sees a GPU.
Then rows (b) and (c) again on the same episodes under each of --lightings varied lights, those of
bench/perception_accuracy.py (its seed, so the lights of the perception figures). State mode renders
nothing, so light cannot change it: it is not rerun.

    python bench/obs_comparison.py CELL --state BUNDLE_OR_RUN --pixels BUNDLE_OR_RUN [--robot gp7] [--episodes 200]
                                   [--lightings 4] [--seed 60000000] [--latency-samples 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as a script

import numpy as np  # noqa: E402

# bench/perception_accuracy.py (its lightings): this script's folder is on the path when run
from perception_accuracy import DEFAULT_SEED as LIGHTING_SEED  # noqa: E402
from perception_accuracy import describe_lighting, lightings  # noqa: E402

from genba.jsonfile import write_json  # noqa: E402
from policies.bundle import load_bundle  # noqa: E402
from policies.bundle_format import is_bundle  # noqa: E402
from policies.envs import control_hz, make_env  # noqa: E402
from policies.errors import PolicyError  # noqa: E402
from policies.evaluate import EvalResult, run_episodes  # noqa: E402
from policies.policy import ChunkedPolicy, LoadedPolicy, load_policy  # noqa: E402
from scenarios import load_scenario  # noqa: E402
from sim.errors import SimError  # noqa: E402

DEFAULT_SEED = 60_000_000
SEED_NOTE = ("episode i runs on seed + i in every row and lighting; the default 60,000,000 lies above every seed "
             "training uses for training seeds below 59 (demos from 100,000 x seed, DAgger rounds 500,000 + 100,000 x seed, "
             "the evaluations that pick the best snapshot 1,000,000 + 1,000,000 x seed + 10,000 x round) and apart "
             "from `genba eval`'s 1,000,000 + seed, which training seed 0's first evaluation also uses")
ROWS = (("state", "state"), ("state", "perceived"), ("pixels", "pixels"))  # (policy, observation mode)
WARMUP_CALLS = 10
LATENCY_NOTE = ("wall time of one policy.act call, single thread, on observations recorded from the row's own nominal "
                f"episodes (the first --latency-samples), after {WARMUP_CALLS} warm-up calls; a chunked policy's call "
                "computes its whole chunk. The state policy's latency on perceived observations EXCLUDES the OpenCV "
                "perception that made them: see perception")
PERCEPTION_NOTE = ("PartLocator.locate() wall time per new perception-camera frame, timed inside the perceived env "
                   "during row (b)'s nominal episodes (the env's own locator, not a step-time difference); rendering "
                   "the frame is not counted (a real camera delivers it), nor the observer's cheap per-step update")
STATE_LIGHT_NOTE = "state mode renders no camera: light cannot change it (not rerun)"


class ComparisonError(Exception):
    """Arguments that cannot make the comparison (a policy of the wrong kind or cell, a cell without cameras)."""


# ---------------------------------------------------------------------- policies


def load_role(target: str, role: str, cell: str) -> LoadedPolicy:
    """The policy for --state or --pixels, refused when it acts on the other kind of observation or another cell."""
    try:
        loaded = load_policy(target)
    except PolicyError as exc:
        raise ComparisonError(f"--{role} {target}: {exc}") from None
    if loaded.obs_mode != role:
        other = "a pixel policy (it acts on camera images)" if loaded.obs_mode == "pixels" else \
            "a state policy (it acts on state features)"
        raise ComparisonError(f"--{role} {target} is {other}; pass it as --{loaded.obs_mode}")
    if loaded.scenario is not None and Path(loaded.scenario).stem != Path(cell).stem:
        raise ComparisonError(f"--{role} {target} was trained on {loaded.scenario!r}, not on {cell!r}")
    return loaded


def one_inference(policy):
    """What one inference is: a chunked policy's network call (one chunk), not its queue of actions."""
    return policy.policy if isinstance(policy, ChunkedPolicy) else policy


def cuda_policy(target: str):
    """The policy on the GPU: a bundle's TorchScript graph (onnxruntime here has no CUDA), a run's network."""
    if is_bundle(Path(target)):
        return load_bundle(target, backend="torchscript", device="cuda")
    return one_inference(load_policy(target, device="cuda").policy)


# ---------------------------------------------------------------------- measuring


class RecordingPolicy:
    """Acts as `policy` and keeps copies of the first `limit` observations, for the latency measurement."""

    def __init__(self, policy, limit: int) -> None:
        self.policy, self.limit, self.observations = policy, limit, []

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs):
        if len(self.observations) < self.limit:
            copied = {k: np.array(v) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs)
            self.observations.append(copied)
        return self.policy.act(obs)


class ProgressPolicy:
    """Acts as `policy` and prints to stderr, at every tenth of the episodes, how far a run has got."""

    def __init__(self, policy, label: str, episodes: int) -> None:
        self.policy, self.label, self.episodes = policy, label, episodes
        self.started, self.t0 = 0, time.monotonic()
        self.every = max(1, episodes // 10)

    def reset(self) -> None:
        if self.started % self.every == 0 and self.started:
            print(f"  {self.label}: {self.started}/{self.episodes} episodes ({time.monotonic() - self.t0:.0f} s)",
                  file=sys.stderr, flush=True)
        self.started += 1
        self.policy.reset()

    def act(self, obs):
        return self.policy.act(obs)


class TimedLocator:
    """The perceived env's PartLocator, timing each locate() call (one per new perception-camera frame)."""

    def __init__(self, locator) -> None:
        self.locator, self.ns = locator, []

    def locate(self, *args, **kwargs):
        start = time.perf_counter_ns()
        try:
            return self.locator.locate(*args, **kwargs)
        finally:
            self.ns.append(time.perf_counter_ns() - start)

    def summary(self, control_steps: int) -> dict[str, Any]:
        us = np.asarray(self.ns, dtype=np.float64) / 1000.0
        figures = percentiles(us)
        per_step = float(us.sum()) / control_steps if control_steps else None
        return {"source": "locator", "frames": len(us), "control_steps": control_steps, **figures,
                "per_control_step_us": None if per_step is None else round(per_step, 1), "note": PERCEPTION_NOTE}


def percentiles(us: np.ndarray) -> dict[str, Any]:
    if len(us) == 0:
        return {"n": 0, "p50_us": None, "p99_us": None, "mean_us": None}
    return {"n": len(us), "p50_us": round(float(np.percentile(us, 50)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1), "mean_us": round(float(us.mean()), 1)}


def act_latency(policy, observations: list) -> dict[str, Any]:
    """p50/p99/mean us of one policy.act call over the recorded observations, after a few warm-up calls."""
    policy.reset()
    for obs in observations[:WARMUP_CALLS]:
        policy.act(obs)
    ns = []
    for obs in observations:
        start = time.perf_counter_ns()
        policy.act(obs)
        ns.append(time.perf_counter_ns() - start)
    return percentiles(np.asarray(ns, dtype=np.float64) / 1000.0)


def outcome(result: EvalResult) -> dict[str, Any]:
    return {"success_rate": result.success_rate, "success_ci95": list(result.success_ci95),
            "mean_cycle_time_s": result.mean_cycle_time_s, "collisions_per_episode": result.collisions_per_episode}


def measure_row(role: str, mode: str, loaded: LoadedPolicy, args, lights, cuda) -> dict[str, Any]:
    """One policy in one observation mode: the nominal episodes, the latency, then the same episodes per varied light."""
    label = f"{role} policy / {mode}"
    try:
        env = make_env(args.cell, args.robot, obs_mode=mode, observe_command=loaded.observe_command)
    except (PolicyError, SimError) as exc:
        raise ComparisonError(f"{args.cell}: cannot run obs mode {mode!r}: {exc}") from None
    try:
        hz = control_hz(env)
        timer = None
        if mode == "perceived":
            timer = env.unwrapped.locator = TimedLocator(env.unwrapped.locator)
        recorder = RecordingPolicy(loaded.policy, args.latency_samples)
        start = time.monotonic()
        result = run_episodes(env, ProgressPolicy(recorder, f"{label} / nominal", args.episodes), args.episodes, args.seed, hz)
        print(f"{label}: {result.line()} ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
        row = {"policy": role, "mode": mode, **outcome(result), "eval": result.to_dict(),
               "wall_s": round(time.monotonic() - start, 1)}
        if timer is not None:
            row["perception"] = timer.summary(result.env_steps)
        if mode == "state":
            row["lighting_note"] = STATE_LIGHT_NOTE
        else:
            row["lighting"] = {}
            for name, light in lights:
                env.unwrapped.sim.lighting = light
                lit = run_episodes(env, ProgressPolicy(loaded.policy, f"{label} / {name}", args.episodes),
                                   args.episodes, args.seed, hz)
                print(f"{label} / {name}: {lit.line()}", file=sys.stderr, flush=True)
                row["lighting"][name] = {**outcome(lit), "eval": lit.to_dict()}
    finally:
        env.close()
    row["latency_cpu_us"] = act_latency(one_inference(loaded.policy), recorder.observations)
    if cuda:
        row["latency_cuda_us"] = act_latency(cuda_policy(loaded.path), recorder.observations)
    return row


# ---------------------------------------------------------------------- report


def fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def success_cell(entry: dict) -> str:
    lo, hi = entry["success_ci95"]
    return f"{entry['success_rate']:6.1%} [{lo:5.1%}, {hi:5.1%}]"


def print_report(report: dict) -> None:
    cuda = report["cuda"]
    print(f"observation modes on {report['cell']} (robot {report['robot']}): "
          f"{report['episodes']} episodes per row, seeds {report['seed']:,} + i; {report['machine']['cpu']}, "
          f"{report['machine']['threads']} thread(s); {report['wall_s']:.0f} s")
    head = (f"{'policy':7s} {'mode':10s} {'success [95% CI]':>23s} {'cycle s':>7s} {'coll/ep':>7s} "
            f"{'cpu p50 us':>10s} {'p99 us':>8s}")
    print(head + (f" {'cuda p50 us':>11s} {'p99 us':>8s}" if cuda else ""))
    for row in report["rows"]:
        cpu = row["latency_cpu_us"]
        line = (f"{row['policy']:7s} {row['mode']:10s} {success_cell(row):>23s} {fmt(row['mean_cycle_time_s'], '7.2f'):>7s} "
                f"{fmt(row['collisions_per_episode'], '7.2f'):>7s} {fmt(cpu['p50_us'], '10.0f'):>10s} {fmt(cpu['p99_us'], '8.0f'):>8s}")
        if cuda:
            gpu = row["latency_cuda_us"]
            line += f" {fmt(gpu['p50_us'], '11.0f'):>11s} {fmt(gpu['p99_us'], '8.0f'):>8s}"
        print(line)
    print("latency: one policy.act call on the row's recorded observations; the state policy's figure on perceived "
          "observations EXCLUDES the OpenCV perception that made them, measured apart:")
    perception = report["perception"]
    if perception is not None:
        print(f"  perception (PartLocator.locate per camera frame, timed in the perceived env): p50 "
              f"{fmt(perception['p50_us'], '.0f')} us, p99 {fmt(perception['p99_us'], '.0f')} us over "
              f"{perception['frames']} frames = {fmt(perception['per_control_step_us'], '.0f')} us per control step")
    lights = [light["name"] for light in report["lightings"]]
    if not lights:
        return
    print(f"success under changed lighting (same episodes; {', '.join(lights)} from bench/perception_accuracy.py):")
    print(f"{'policy':7s} {'mode':10s} {'nominal':>23s} " + " ".join(f"{name:>23s}" for name in lights))
    for row in report["rows"]:
        if "lighting" not in row:
            print(f"{row['policy']:7s} {row['mode']:10s} {success_cell(row):>23s}  - {row['lighting_note']}")
            continue
        print(f"{row['policy']:7s} {row['mode']:10s} {success_cell(row):>23s} "
              + " ".join(f"{success_cell(row['lighting'][name]):>23s}" for name in lights))


def machine(cuda: bool) -> dict[str, Any]:
    info = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None, "python": platform.python_version()}
    if cuda:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    # The notes the docstring names, written out: --help showed "(SEED_NOTE)" and no note.
    notes = "\n".join(textwrap.fill(f"{name}: {text}.", 110, subsequent_indent="  ") for name, text in
                      (("SEED_NOTE", SEED_NOTE), ("LATENCY_NOTE", LATENCY_NOTE), ("PERCEPTION_NOTE", PERCEPTION_NOTE)))
    parser = argparse.ArgumentParser(description=f"{__doc__}\n{notes}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", help="the scenario both policies were trained on (bin-sort, conveyor-pick, or a YAML path)")
    parser.add_argument("--state", required=True, help="a state policy: bundle or run directory (rows a and b)")
    parser.add_argument("--pixels", required=True, help="a pixel policy: bundle or run directory (row c)")
    parser.add_argument("--robot", help="robot model override (default: the scenario's)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per row and lighting")
    parser.add_argument("--lightings", type=int, default=4, help="varied lightings to rerun rows b and c under (0 to 4)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="first episode seed (SEED_NOTE above)")
    parser.add_argument("--latency-samples", type=int, default=1000, help="recorded observations timed per row")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if not 0 <= args.lightings <= 4:
        parser.error(f"--lightings must be 0 to 4 (bench/perception_accuracy.py draws 4 varied lights), got {args.lightings}")
    if args.latency_samples < 1:
        parser.error(f"--latency-samples must be >= 1, got {args.latency_samples}")
    return parser, args


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    try:
        policies = {role: load_role(getattr(args, role), role, args.cell) for role in ("state", "pixels")}
    except ComparisonError as exc:
        parser.error(str(exc))
    import torch  # loaded by the policies already

    cuda = torch.cuda.is_available()
    lights = lightings(LIGHTING_SEED)[1:1 + args.lightings]  # [0] is the nominal light every row runs under first
    start = time.monotonic()
    rows = []
    try:
        for role, mode in ROWS:
            rows.append(measure_row(role, mode, policies[role], args, lights, cuda))
    except ComparisonError as exc:
        parser.error(str(exc))
    report = {
        "bench": "obs_comparison", "cell": args.cell, "robot": args.robot or load_scenario(args.cell).robot.model, "episodes": args.episodes, "seed": args.seed,
        "seed_note": SEED_NOTE, "policies": {role: loaded.describe() for role, loaded in policies.items()},
        "rows": rows, "perception": next((r["perception"] for r in rows if "perception" in r), None),
        "latency_note": LATENCY_NOTE, "cuda": cuda, "lighting_seed": LIGHTING_SEED,
        "lightings": [describe_lighting(name, light) for name, light in lights], "state_lighting_note": STATE_LIGHT_NOTE,
        "machine": machine(cuda), "wall_s": round(time.monotonic() - start, 1),
    }
    print_report(report)
    if args.json_path:
        write_json(args.json_path, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
