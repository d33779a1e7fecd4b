"""Round-trip latency of the bridge against a bare pyzmq DEALER/ROUTER echo, paced at --hz.

    python bench/bridge_latency.py [--json PATH] [--seconds 30] [--hz 1000] [--bundle DIR] [--device cpu]
                                   [--executor onnxruntime|kernel] [--inference auto|inline|thread] [--block 1.0]

One run measures, interleaved in alternating blocks of --block seconds (1 s; the order flips every
block) so that both see the same load on a shared machine, each block on a fresh connection (on this
2-vCPU VM, identical loopback connections differ persistently by up to ~150 us p50, so one connection
per variant measures its luck), with identical pacing and message sizes:
  echo   - a bare ROUTER echo server process and a DEALER client (the floor pyzmq can do here); like the
           bridge client, it takes only the echo of its own request as the reply (see Echo);
  bridge - `genba bridge serve` in its own process (real bundle, ONNX/TorchScript inference,
           batching, telemetry) and the real BridgeClient + SafetyFilter in this process.
Each request is sent on its tick with a deadline of one period; a reply later than that is a
deadline miss. Targets: bridge p50 <= 1.5x echo p50 and p99 <= 2x echo p99.

The bridge figure (the headline, and the ratios) runs from the request being sent to the command
applied by the SafetyFilter: server + bundle inference + client + safety, what a controller waits
for. The round trip alone (request sent -> action decoded, what the echo measures) is printed as
"round trip" and written as bridge.round_trip in --json. The server's own timing of each reply
(receipt -> inference start, forward pass) comes from the action headers.
Without --bundle, a freshly initialised SB3 PPO MLP for the gantry robot is exported to a temp dir
(a latency figure of a real network, if an untrained one). Any served bundle works: the client takes
the observation size, action kind and robot limits from the server's welcome. The children (echo
server, bridge server) end with this process, however it ends: on SIGTERM/SIGINT it stops them, and
they get SIGTERM from the kernel if it is killed outright (PR_SET_PDEATHSIG).

    python bench/bridge_latency.py --obs pixels [--frame-set 84-rgbd|224-rgb] [--encodings raw,jpeg] [--bundle DIR] ...

runs bench/bridge_images.py --echo: steps carrying camera frames (raw or encoded) against an echo of the
same bytes, at the bundle's control rate (the toy pixel policy's cell's without --bundle); its options apply.

    python bench/bridge_latency.py --chunks [--delays 30,50] [--jitter 10] [--drop 0.01] [--seconds 30]
                                   [--chunk 10] [--bundle DIR] [--json PATH]

--chunks measures the controller-side chunk executor instead (bridge/executor.py): a chunked bundle
served by `genba bridge serve`, a control loop at the bundle's control rate on the wall clock (the
gantry of bridge/gantry.py integrating the executed actions, so observations move), and the twin's
non-blocking fault injection adding each delay (plus uniform jitter and lost replies) to every
request. Per delay it reports the fraction of control periods served from the queue, the hold
fraction (queue dry), and the action discontinuity at chunk boundaries (mean max-abs difference
between a new chunk's first executed action and the action before it) beside the mean step within
a chunk. Without --bundle a fresh (untrained) chunked gantry MLP is exported: the timing figures
are the mechanism's; a trained policy's discontinuities come from `genba bridge twin` (its report
has the same figures).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one thread per latency-critical process

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echo import EchoClient, echo_server  # noqa: E402  (bench/echo.py: this script's folder is on the path)
from pacing import paced  # noqa: E402

from bridge import gantry  # noqa: E402
from bridge import protocol as wire  # noqa: E402
from bridge.client import BridgeClient, ClientConfig  # noqa: E402
from bridge.latency import LatencyStats  # noqa: E402
from bridge.realtime import freeze_heap  # noqa: E402
from bridge.safety import SafetyFilter  # noqa: E402
from genba.gantry_bundle import GantryReachEnv, export_gantry_bundle, export_gantry_chunk_bundle  # noqa: E402
from genba.jsonfile import write_json  # noqa: E402
from genba.server_process import ServerProcess, child_env, die_with_parent, stop_process  # noqa: E402
from policies.bundle_format import read_manifest  # noqa: E402

CHILDREN: list[subprocess.Popen] = []  # every process this bench started, stopped however it ends


def spawn_echo() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, __file__, "--echo-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=child_env(), text=True,
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    CHILDREN.append(proc)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the echo server exited before it was ready")
    return proc, json.loads(line)


def pace(hz: float, seconds: float, once, stats: LatencyStats, warmup: int = 0) -> int:
    """Call once(deadline_s, stats) on every tick for `seconds` (after `warmup` unmeasured calls); returns late ticks."""
    period_ns = int(1e9 / hz)
    for i in range(warmup):  # connection set-up, allocator and cache warm-up: not measured
        once(period_ns / 1e9, None)
    start = time.monotonic_ns()
    return paced(period_ns, start, start + int(seconds * 1e9), lambda: once(period_ns / 1e9, stats))


class Echo:
    """The bare pyzmq floor: a ROUTER echo process and an EchoClient here (bench/echo.py), its requests the
    sizes of a bridge step request, numbered in the first 8 bytes of the data frame."""

    def __init__(self, payload: list[bytes]) -> None:
        self.proc, ready = spawn_echo()
        self.client = EchoClient(ready["endpoint"], tag_at=1)
        self.payload = payload

    def reconnect(self) -> None:
        self.client.reconnect()

    def once(self, deadline_s: float, stats: LatencyStats | None) -> None:
        rtt = self.client.round_trip(self.payload, deadline_s)
        if stats is not None:
            stats.miss() if rtt is None else stats.record(rtt)

    def info(self) -> dict:
        return {"stale_replies": self.client.stale}

    def close(self) -> None:
        self.client.close()
        self.proc.stdin.close()
        self.proc.wait(10)


class Bridge:
    """`genba bridge serve` in its own process; the real BridgeClient + SafetyFilter here."""

    def __init__(self, hz: float, bundle: Path, device: str, inference: str, executor: str) -> None:
        self.server = ServerProcess([bundle], "--telemetry", "tcp://127.0.0.1:*", "--device", device, "--inference", inference,
                                    "--executor", executor, "--log-level", "WARNING", die_with_this_process=True)
        CHILDREN.append(self.server.proc)
        self.ready = self.server.ready
        self.manifest = read_manifest(bundle)
        self.client = BridgeClient(ClientConfig(self.ready["endpoint"], self.manifest["name"], self.manifest["spec_hash"]))
        welcome = self.client.connect(5.0)
        limits = welcome.limits
        self.obs = np.zeros(welcome.obs_dim, dtype=np.float32)
        if limits.model == gantry.MODEL:  # hand-computable kinematics: the workspace and tool-speed clamps run too
            robot = gantry.SimulatedGantry()
            q0, fk, self.obs = robot.read_joints(), gantry.forward_kinematics_floats, robot.observe()
        else:  # any other robot: its joint clamps (no kinematics on this side)
            q0, fk = (limits.joint_lower + limits.joint_upper) / 2.0, None
        self.safety = SafetyFilter(limits, 1.0 / hz, q0, fk)
        # An action moves the joints as far per request as it would per control period: the same speeds, paced at hz.
        self.n = min(welcome.act_dim, limits.n_joints)
        self.scale = limits.max_velocity[: self.n] / hz
        self.round_trip = LatencyStats()
        self.server_us: list[tuple[float, float]] = []  # (queue, inference) per reply, from the action headers

    def reconnect(self) -> None:
        self.client.drop_session("bench: a fresh connection for each block")
        self.client.connect(5.0)

    def once(self, deadline_s: float, stats: LatencyStats | None) -> None:
        # Headline (stats): request sent -> command applied by the SafetyFilter, the controller's
        # real latency. Round trip: request sent -> action decoded (what the echo measures).
        start = time.monotonic_ns()
        result = self.client.step(self.obs, deadline_s)
        if result.action is not None:
            target = self.safety.q.copy()
            target[: self.n] += result.action[: self.n] * self.scale
            self.safety.apply(target)
            end_to_end = time.monotonic_ns() - start
            if stats is not None:
                self.round_trip.record(result.rtt_ns)
                self.server_us.append((result.server_queue_us, result.server_infer_us))
                stats.record(end_to_end) if end_to_end <= deadline_s * 1e9 else stats.miss()
        elif stats is not None:
            stats.miss()
            self.round_trip.miss()

    def info(self) -> dict:
        queue_us, infer_us = zip(*self.server_us) if self.server_us else ((), ())
        return {"device": self.ready["device"], "backend": self.ready["backend"], "inference": self.ready.get("inference"),
                "executor": self.ready["executors"][self.manifest["name"]],
                "bundle": self.manifest["name"], "round_trip": self.round_trip.summary(),
                "safety_interventions": self.safety.report(),
                "server_queue_p50_us": float(np.median(queue_us)) if queue_us else None,
                "server_infer_p50_us": float(np.median(infer_us)) if infer_us else None,
                "client_counts": dict(self.client.counts)}

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def run_interleaved(variants: dict, hz: float, seconds: float, block_s: float) -> dict[str, tuple[dict, int, list]]:
    """Measure every variant for `seconds` in alternating blocks of block_s, so each sees the same machine load.

    Returns per variant: the pooled summary, late ticks, and each block's p50 (us), which shows how
    much the host's state moved the floor during the run.
    """
    stats = {name: LatencyStats(capacity=int(hz * (seconds + block_s)) + 16) for name in variants}
    late = dict.fromkeys(variants, 0)
    block_p50s: dict[str, list[float]] = {name: [] for name in variants}
    for name, variant in variants.items():
        pace(hz, 0.0, variant.once, stats[name], warmup=min(int(hz), 500))
    done, block = 0.0, 0
    while done < seconds - 1e-9:
        length = min(block_s, seconds - done)
        order = list(variants) if block % 2 == 0 else list(reversed(variants))  # neither always goes first
        for name in order:
            variants[name].reconnect()
            before = stats[name].count
            late[name] += pace(hz, length, variants[name].once, stats[name], warmup=20)
            fresh = stats[name].count - before
            if fresh:
                block_p50s[name].append(round(float(np.median(stats[name].samples_ns()[-fresh:])) / 1e3, 1))
        done += length
        block += 1
    return {name: (stats[name].summary(), late[name], block_p50s[name]) for name in variants}


def chunk_run(bundle: Path, delay_ms: float, jitter_ms: float, drop: float, seconds: float, seed: int) -> dict:
    """One delay: the gantry driven through the chunk executor for `seconds` of control periods."""
    from bridge.chunks import ChunkQueueConfig
    from bridge.executor import ChunkExecutor
    from genba.twin.config import Faults
    from genba.twin.faults import FaultyChunkLink
    from policies.policy import replan_after

    manifest = read_manifest(bundle)
    with ServerProcess([bundle], "--telemetry", "off", "--device", "cpu", "--log-level", "WARNING",
                       die_with_this_process=True) as server:
        client = BridgeClient(ClientConfig(server.endpoint, manifest["name"], manifest["spec_hash"], name="bench-chunks"))
        try:
            welcome = client.connect(10.0)
            period_ns = int(1e9 / welcome.control_hz)
            link = FaultyChunkLink(client, Faults(delay_ms, jitter_ms, drop, seed))
            executor = ChunkExecutor(link, ChunkQueueConfig(period_ns, welcome.chunk, replan_after=replan_after(welcome.chunk)))
            env = GantryReachEnv(episode_steps=10**9)
            obs, _ = env.reset(seed=seed)
            late, tick = 0, time.monotonic_ns()
            for _ in range(int(seconds * welcome.control_hz)):
                if time.monotonic_ns() > tick + period_ns // 2:
                    late += 1
                action = executor.tick(obs)
                if action is not None:
                    obs, *_ = env.step(np.asarray(action, np.float32))
                tick += period_ns
                executor.wait(tick)
            summary = executor.summary()
        finally:
            client.close()
    return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "drop_rate": drop, "dropped": link.dropped, "late_ticks": late,
            "chunk": welcome.chunk, "control_hz": welcome.control_hz, "round_trip": client.stats.summary(), **summary}


def chunks_main(args) -> None:
    delays = [float(d) for d in args.delays.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or export_gantry_chunk_bundle(Path(tmp) / "gantry-chunk", chunk=args.chunk)
        runs = [chunk_run(Path(bundle), d, args.jitter, args.drop, args.seconds, i) for i, d in enumerate(delays)]
    print(f"{'delay ms':>9}{'jitter':>8}{'drop':>7}{'periods':>9}{'served':>9}{'hold':>8}{'requests':>10}{'lost':>6}"
          f"{'boundary':>10}{'step':>8}")
    for r in runs:
        jump = lambda v: float("nan") if v is None else v  # noqa: E731
        print(f"{r['delay_ms']:9.0f}{r['jitter_ms']:8.0f}{r['drop_rate']:7.2f}{r['periods']:9d}{r['served_fraction']:9.1%}"
              f"{r['hold_fraction']:8.1%}{r['requests']:10d}{r['lost']:6d}{jump(r['boundary_jump_mean']):10.3f}"
              f"{jump(r['step_jump_mean']):8.3f}")
    print(f"chunk {runs[0]['chunk']} actions at {runs[0]['control_hz']:g} Hz; served = control periods with an action from "
          "the queue, hold = queue dry; boundary/step = mean max|a - a_prev| at chunk boundaries / within a chunk")
    write_json(args.json, {"mode": "chunks", "seconds": args.seconds, "runs": runs})


def main() -> None:
    # --obs pixels: steps with camera frames against an echo of the same bytes, measured by bench/bridge_images.py
    # (its options: --frame-set, --encodings, --controllers, --bundle, ...; see its --help).
    obs_mode = argparse.ArgumentParser(add_help=False)
    obs_mode.add_argument("--obs", choices=["state", "pixels"], default="state")
    known, rest = obs_mode.parse_known_args()
    if known.obs == "pixels":
        import bridge_images  # this script's folder is on the path

        sys.argv = [bridge_images.__file__, "--echo", *(a for a in rest if a != "--echo")]
        bridge_images.main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obs", choices=["state", "pixels"], default="state",
                        help="pixels: steps carrying camera frames, bridge vs echo (bench/bridge_images.py --echo and its options)")
    parser.add_argument("--chunks", action="store_true", help="measure the chunk executor under added delay instead")
    parser.add_argument("--delays", default="30,50", help="--chunks: added delays in ms, comma-separated")
    parser.add_argument("--jitter", type=float, default=10.0, help="--chunks: plus uniform jitter up to this (ms)")
    parser.add_argument("--drop", type=float, default=0.01, help="--chunks: fraction of replies lost")
    parser.add_argument("--chunk", type=int, default=10, help="--chunks: chunk length of the default gantry bundle")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per variant")
    parser.add_argument("--hz", type=float, default=1000.0, help="request rate")
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: export a gantry PPO bundle)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="server inference device")
    parser.add_argument("--block", type=float, default=1.0, help="seconds per alternating echo/bridge block")
    parser.add_argument("--inference", default="auto", choices=["auto", "inline", "thread"], help="server: where forward passes run")
    parser.add_argument("--executor", default="onnxruntime", choices=["onnxruntime", "kernel"],
                        help="server: what runs an ONNX bundle on the CPU (the kernel is the opt-in fast path)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server()
        return
    if args.chunks:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        chunks_main(args)
        return
    # SIGTERM ends the run like Ctrl-C: the finally blocks below stop the children.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or export_gantry_bundle(Path(tmp) / "gantry-reach")
        variants = {}
        try:
            variants["bridge"] = Bridge(args.hz, Path(bundle), args.device, args.inference, args.executor)
            obs = variants["bridge"].obs
            # The echo carries the frames the bridge client sends for a step (its fixed header layout).
            payload = [wire.step_header_layout(obs.size).pack(1, wire.now_ns(), 1000), obs.tobytes()]
            variants["echo"] = Echo(payload)
            freeze_heap()  # as `genba bridge serve` and `genba bridge twin` do after start-up
            results = run_interleaved({"echo": variants["echo"], "bridge": variants["bridge"]}, args.hz, args.seconds, args.block)
            info, echo_info = variants["bridge"].info(), variants["echo"].info()
        finally:
            for variant in variants.values():
                variant.close()
            for proc in CHILDREN:  # any child a failed start-up left behind
                stop_process(proc)
        (echo, echo_late, echo_blocks), (bridge, bridge_late, bridge_blocks) = results["echo"], results["bridge"]
    ratios = {
        "p50": bridge["p50_us"] / echo["p50_us"],
        "p99": bridge["p99_us"] / echo["p99_us"],
        "p999": bridge["p999_us"] / echo["p999_us"],
        "max": bridge["max_us"] / echo["max_us"],
    }
    result = {
        "hz": args.hz, "seconds": args.seconds, "block_s": args.block, "cpus": os.cpu_count(),
        "echo": {**echo, "late_ticks": echo_late, "block_p50_us": echo_blocks, **echo_info},
        "bridge": {**bridge, "late_ticks": bridge_late, "block_p50_us": bridge_blocks, **info},
        "ratio_bridge_over_echo": ratios,
        "targets_met": {"p50<=1.5x": ratios["p50"] <= 1.5, "p99<=2x": ratios["p99"] <= 2.0},
    }
    met = ["met" if ok else "MISSED" for ok in result["targets_met"].values()]
    print(f"{'':14}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}{'max us':>10}{'misses':>8}{'replies':>9}")
    for name, row in (("echo", echo), ("bridge", bridge), ("  round trip", info["round_trip"])):
        print(f"{name:14}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['p999_us']:10.1f}{row['max_us']:10.1f}"
              f"{row['deadline_misses']:8d}{row['count']:9d}")
    print(f"{'bridge/echo':14}{ratios['p50']:10.2f}{ratios['p99']:10.2f}{ratios['p999']:10.2f}{ratios['max']:10.2f}")
    for name, blocks in (("echo", echo_blocks), ("bridge", bridge_blocks)):
        if blocks:
            print(f"{name} p50 per {args.block:g}-s block (us): min {min(blocks):.1f}, median {np.median(blocks):.1f}, "
                  f"max {max(blocks):.1f} over {len(blocks)} blocks")
    if info.get("server_infer_p50_us") is not None:
        print(f"inside the server (p50): {info['server_queue_p50_us']:.1f} us from receipt to inference start, "
              f"{info['server_infer_p50_us']:.1f} us inference")
    print(f"targets (bridge incl. safety vs echo): p50 <= 1.5x {met[0]}, p99 <= 2x {met[1]} "
          f"(server device {info.get('device')}, backend {info.get('backend')}, executor {info.get('executor')}, "
          f"inference {info.get('inference')}, "
          f"{os.cpu_count()} CPUs)")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
