"""Round-trip latency of the bridge against a bare pyzmq DEALER/ROUTER echo, paced at --hz.

    python bench/bridge_latency.py [--json PATH] [--seconds 30] [--hz 1000] [--bundle DIR] [--device cpu]

One run measures, one after the other and with identical pacing and message sizes:
  echo   - a bare ROUTER echo server process and a DEALER client (the floor pyzmq can do here);
  bridge - `python -m bridge serve` in its own process (real bundle, ONNX/TorchScript inference,
           batching, telemetry) and the real BridgeClient + SafetyFilter in this process.
Each request is sent on its tick with a deadline of one period; a reply later than that is a
deadline miss. Targets: bridge p50 <= 1.5x echo p50 and p99 <= 2x echo p99.

The bridge figure (the headline, and the ratios) runs from the request being sent to the command
applied by the SafetyFilter: server + bundle inference + client + safety, what a controller waits
for. The round trip alone (request sent -> action decoded, what the echo measures) is printed as
"round trip" and written as bridge.round_trip in --json. The server's own timing of each reply
(receipt -> inference start, forward pass) comes from the action headers.
Without --bundle, a freshly initialised SB3 PPO MLP for the gantry robot is exported to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one thread per latency-critical process

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge import gantry  # noqa: E402
from bridge import protocol as wire  # noqa: E402
from bridge.client import BridgeClient, ClientConfig  # noqa: E402
from bridge.latency import LatencyStats  # noqa: E402
from bridge.limits import SafetyLimits  # noqa: E402
from bridge.safety import SafetyFilter  # noqa: E402


def echo_server() -> None:
    """Child mode: the bare ROUTER echo (prints its endpoint, serves until stdin closes)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind("tcp://127.0.0.1:*")
    print(json.dumps({"event": "ready", "endpoint": sock.getsockopt_string(zmq.LAST_ENDPOINT)}), flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    while True:
        events = dict(poller.poll())
        if sys.stdin.fileno() in events:
            break
        if sock in events:
            sock.send_multipart(sock.recv_multipart())
    sock.close(0)
    ctx.term()


def spawn(cmd: list[str]) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"{' '.join(cmd)} exited before it was ready")
    return proc, json.loads(line)


def pace(hz: float, seconds: float, once) -> tuple[LatencyStats, int]:
    """Call once(deadline_s) on every tick; returns the stats it filled and late ticks."""
    period_ns = int(1e9 / hz)
    stats = LatencyStats(capacity=int(hz * seconds) + 16)
    warmup = min(int(hz), 500)
    late = 0
    for i in range(warmup):  # connection set-up, allocator and cache warm-up: not measured
        once(period_ns / 1e9, None)
    next_tick = time.monotonic_ns()
    end = next_tick + int(seconds * 1e9)
    while next_tick < end:
        now = time.monotonic_ns()
        if now < next_tick:
            time.sleep((next_tick - now) / 1e9)
        elif now - next_tick > period_ns:
            late += 1
            next_tick = now  # we fell behind: skip ahead rather than bursting
        once(period_ns / 1e9, stats)
        next_tick += period_ns
    return stats, late


def run_echo(hz: float, seconds: float, payload: list[bytes]) -> tuple[dict, int]:
    proc, ready = spawn([sys.executable, __file__, "--echo-server"])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(ready["endpoint"])
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)

    def once(deadline_s: float, stats: LatencyStats | None) -> None:
        start = time.monotonic_ns()
        sock.send_multipart(payload)
        if poller.poll(max(1, int(deadline_s * 1e3))):
            sock.recv_multipart()
            rtt = time.monotonic_ns() - start
            if stats is not None:
                stats.record(rtt) if rtt <= deadline_s * 1e9 else stats.miss()
        elif stats is not None:
            stats.miss()

    try:
        stats, late = pace(hz, seconds, once)
    finally:
        sock.close(0)
        ctx.term()
        proc.stdin.close()
        proc.wait(10)
    return stats.summary(), late


def run_bridge(hz: float, seconds: float, bundle: Path, device: str, inference: str = "auto") -> tuple[dict, int, dict]:
    proc, ready = spawn([sys.executable, "-m", "bridge", "serve", str(bundle), "--bind", "tcp://127.0.0.1:*",
                         "--telemetry", "tcp://127.0.0.1:*", "--device", device, "--inference", inference,
                         "--log-level", "WARNING"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    client = BridgeClient(ClientConfig(ready["endpoint"], manifest["name"], manifest["spec_hash"]))
    info = {}
    try:
        welcome = client.connect(5.0)
        limits = SafetyLimits.from_robot_spec(manifest["robot"]).tighten(welcome.limits)
        robot = gantry.SimulatedGantry()
        safety = SafetyFilter(limits, 1.0 / hz, robot.read_joints(), gantry.forward_kinematics)
        scale = gantry.action_scale() * (welcome.control_hz / hz)  # same speed, paced at hz
        obs = robot.observe()

        round_trip = LatencyStats(capacity=int(hz * seconds) + 16)
        server_us: list[tuple[float, float]] = []  # (queue, inference) per reply, from the action headers

        def once(deadline_s: float, stats: LatencyStats | None) -> None:
            # Headline (stats): request sent -> command applied by the SafetyFilter, the
            # controller's real latency. Round trip: request sent -> action decoded (what the echo measures).
            start = time.monotonic_ns()
            result = client.step(obs, deadline_s)
            if result.action is not None:
                safety.apply(safety.q + result.action * scale)
                end_to_end = time.monotonic_ns() - start
                if stats is not None:
                    round_trip.record(result.rtt_ns)
                    server_us.append((result.server_queue_us, result.server_infer_us))
                    stats.record(end_to_end) if end_to_end <= deadline_s * 1e9 else stats.miss()
            elif stats is not None:
                stats.miss()
                round_trip.miss()

        stats, late = pace(hz, seconds, once)
        info = {"device": ready["device"], "backend": ready["backend"], "inference": ready.get("inference"), "bundle": manifest["name"],
                "round_trip": round_trip.summary(), "safety_interventions": safety.report(),
                "server_queue_p50_us": float(np.median([q for q, _ in server_us])) if server_us else None,
                "server_infer_p50_us": float(np.median([i for _, i in server_us])) if server_us else None,
                "client_counts": dict(client.counts)}
    finally:
        client.close()
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    info["server_exit"] = proc.returncode
    return stats.summary(), late, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per variant")
    parser.add_argument("--hz", type=float, default=1000.0, help="request rate")
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: export a gantry PPO bundle)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="server inference device")
    parser.add_argument("--inference", default="auto", choices=["auto", "inline", "thread"], help="server: where forward passes run")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server()
        return
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or gantry.export_gantry_bundle(Path(tmp) / "gantry-reach")
        obs = np.zeros(gantry.OBS_DIM, dtype=np.float32)
        # The echo carries the same frames a bridge step request does.
        payload = wire.encode(wire.make_header(wire.MsgType.STEP, 1, deadline_us=1000), [obs])
        echo, echo_late = run_echo(args.hz, args.seconds, payload)
        bridge, bridge_late, info = run_bridge(args.hz, args.seconds, Path(bundle), args.device, args.inference)
    ratios = {
        "p50": bridge["p50_us"] / echo["p50_us"],
        "p99": bridge["p99_us"] / echo["p99_us"],
        "p999": bridge["p999_us"] / echo["p999_us"],
        "max": bridge["max_us"] / echo["max_us"],
    }
    result = {
        "hz": args.hz, "seconds": args.seconds, "cpus": os.cpu_count(),
        "echo": {**echo, "late_ticks": echo_late}, "bridge": {**bridge, "late_ticks": bridge_late, **info},
        "ratio_bridge_over_echo": ratios,
        "targets_met": {"p50<=1.5x": ratios["p50"] <= 1.5, "p99<=2x": ratios["p99"] <= 2.0},
    }
    print(f"{'':14}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}{'max us':>10}{'misses':>8}{'replies':>9}")
    for name, row in (("echo", echo), ("bridge", bridge), ("  round trip", info["round_trip"])):
        print(f"{name:14}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['p999_us']:10.1f}{row['max_us']:10.1f}"
              f"{row['deadline_misses']:8d}{row['count']:9d}")
    print(f"{'bridge/echo':14}{ratios['p50']:10.2f}{ratios['p99']:10.2f}{ratios['p999']:10.2f}{ratios['max']:10.2f}")
    if info.get("server_infer_p50_us") is not None:
        print(f"inside the server (p50): {info['server_queue_p50_us']:.1f} us from receipt to inference start, "
              f"{info['server_infer_p50_us']:.1f} us inference")
    print(f"targets (bridge incl. safety vs echo): p50 <= 1.5x {'met' if ratios['p50'] <= 1.5 else 'MISSED'}, "
          f"p99 <= 2x {'met' if ratios['p99'] <= 2.0 else 'MISSED'} "
          f"(server device {info.get('device')}, backend {info.get('backend')}, inference {info.get('inference')}, "
          f"{os.cpu_count()} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
