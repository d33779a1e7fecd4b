"""What the web viewer costs the sim loop: steps/s with `genba view --web` on and no browser, side by side.

Rounds alternate (so all modes share the machine's noise) between, on one env with the same seeds:
  plain:   obs = env.step(expert.act(obs)), resetting at episode ends; no viewer code at all;
  loop:    the viewer's ViewLoop with nothing attached (its own bookkeeping);
  web:     ViewLoop pushing status into a started LiveView (loopback, port 0) that no browser watches;
  watched: (--watched) the same with one WebSocket client connected, so frames are rendered at the
           fps cap: what watching costs, for information (the target concerns the unwatched case).
All loops run unpaced (speed 0). The figure of merit is median web steps/s over median plain steps/s
(target >= 0.8).

    python bench/viewer_overhead.py [--scenario conveyor-pick] [--steps 600] [--rounds 5] [--watched] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import sim  # noqa: E402
from genba.jsonfile import write_json  # noqa: E402
from genba.viewer.live import LiveView  # noqa: E402
from genba.viewer.loop import LoopOptions, ViewLoop  # noqa: E402
from sim.camera import choose_camera  # noqa: E402
from sim.experts import make_expert  # noqa: E402

TARGET = 0.8


def run_plain(env, actor, steps: int, seed: int) -> float:
    episode = 0
    obs, _ = env.reset(seed=seed)
    actor.reset()
    start = time.perf_counter()
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(actor.act(obs))
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
            actor.reset()
    return steps / (time.perf_counter() - start)


def run_loop(env, actor, camera, steps: int, seed: int, view: LiveView | None) -> float:
    dt = env.unwrapped.scenario.physics.control_period
    options = LoopOptions(episodes=None, seconds=steps * dt, seed=seed, speed=0.0)
    summary = ViewLoop(env, actor, camera, options=options, view=view).run()
    assert summary.steps == steps, (summary.steps, steps)
    return summary.steps_per_s


class Watcher:
    """One WebSocket client on its own thread, reading (and dropping) everything the viewer sends."""

    def __init__(self, url: str):
        self.url, self.frames = url + "ws", 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.url) as ws:
                self._connected.set()
                while not self._stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.2)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        self.frames += 1
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break

    def __enter__(self) -> "Watcher":
        self._thread.start()
        if not self._connected.wait(10):
            raise RuntimeError("the benchmark's WebSocket client could not connect")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="conveyor-pick")
    parser.add_argument("--steps", type=int, default=600, help="control steps per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fps", type=float, default=10.0, help="the viewer's frame-rate cap (watched mode)")
    parser.add_argument("--watched", action="store_true", help="also time a loop with a browser-like client connected")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    env = sim.make_env(args.scenario, render_mode="rgb_array")
    actor = make_expert(env)
    camera = choose_camera(env)
    modes = ["plain", "loop", "web"] + (["watched"] if args.watched else [])
    rates: dict[str, list[float]] = {m: [] for m in modes}
    frames_watched = 0
    try:
        with LiveView(port=0, fps=args.fps, title="viewer-overhead bench") as view:
            run_plain(env, actor, min(args.steps, 100), args.seed)  # warm-up: caches, first allocations
            for _ in range(args.rounds):
                rates["plain"].append(run_plain(env, actor, args.steps, args.seed))
                rates["loop"].append(run_loop(env, actor, camera, args.steps, args.seed, None))
                rates["web"].append(run_loop(env, actor, camera, args.steps, args.seed, view))
                if args.watched:
                    with Watcher(view.url) as watcher:
                        rates["watched"].append(run_loop(env, actor, camera, args.steps, args.seed, view))
                    frames_watched += watcher.frames
                    while view.watchers:  # the server notices the client left
                        time.sleep(0.01)
            assert view.watchers == 0
    finally:
        env.close()

    median = {m: statistics.median(r) for m, r in rates.items()}
    ratio = {m: median[m] / median["plain"] for m in modes}
    result = {
        "scenario": args.scenario, "steps_per_round": args.steps, "rounds": args.rounds, "fps_cap": args.fps,
        "steps_per_s": {m: [round(v, 1) for v in r] for m, r in rates.items()},
        "median_steps_per_s": {m: round(v, 1) for m, v in median.items()},
        "ratio_to_plain": {m: round(v, 3) for m, v in ratio.items()},
        "target_web_ratio": TARGET, "web_meets_target": ratio["web"] >= TARGET,
        "cpu_count": os.cpu_count(),
    }
    if args.watched:
        result["frames_sent_to_watcher"] = frames_watched
    for m in modes:
        print(f"{m:8s} {median[m]:8.1f} steps/s  ({ratio[m]:.1%} of plain)  rounds: "
              + ", ".join(f"{v:.0f}" for v in rates[m]))
    print(f"web viewer, no client: {ratio['web']:.1%} of plain steps/s (target >= {TARGET:.0%}): "
          + ("PASS" if result["web_meets_target"] else "FAIL"))
    write_json(args.json, result)
    return 0 if result["web_meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
