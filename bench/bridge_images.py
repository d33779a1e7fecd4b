"""Round trips of steps carrying 84x84 RGB-D camera frames: raw vs PNG vs JPEG, 1 and 8 controllers.

    python bench/bridge_images.py [--json PATH] [--seconds 10] [--hz HZ] [--controllers 1,8]
                                  [--encodings raw,png,jpeg,camera-jpeg] [--inference auto|inline|thread]
                                  [--frame-set 84-rgbd|224-rgb] [--echo]
                                  [--bundle PIXEL_BUNDLE [--device cpu|cuda]]

The frames are the cell's own (conveyor-pick's `wrist` camera, or the bundle's cell: 84x84 RGB and
84x84 depth per camera, rendered by the sim with obs_mode pixels over a few dozen steps of random
actions), so PNG and JPEG compress them as they would a cell's. The server is a BridgeServer in its
own process serving, by default, the TOY pixel policy of genba/pixel_toy.py (numpy: the mean of each
frame; no network, so next to no inference time): then the figures are the bridge's own cost of frames
(encoding on the controller, transport, checks and decoding on the server, stacking for the batch),
not a model's. With --bundle it serves that pixel bundle (a real CNN, batched across controllers). Each controller is
a process of its own running the reference BridgeClient, paced at --hz (default: the bundle's control
rate, or the toy's cell's: conveyor-pick, 20 Hz) with a deadline of one period; all of them start together. "jpeg" sends the colour frame JPEG and its depth PNG (depth is
never JPEG); a frame whose encoding would be larger than raw goes raw ("sent as"). "camera-jpeg" sends the
colour frames as JPEG files made before the run, as a camera that encodes its output gives them, and depth
raw, as a depth camera gives it: the controller encodes nothing (bridge.images.EncodedFrame). The round trip
runs from step() being called (before the frames are encoded) to the action decoded. Every child process
is stopped however this run ends.

--frame-set 224-rgb sends one 224x224 RGB frame per step instead (the centre of the cell's rendered overview
camera, 320x240; toy policy only). --echo measures a bare pyzmq echo (bench/echo.py) of the same step
messages (built once, in the encodings the server agreed, so no encoding in its round trip) beside the
bridge: each controller process alternates between the two in 1-s blocks (shorter in runs under 2 s), each
block on a fresh connection whose first tick is not timed, --seconds for each (a setting takes twice as
long), so both see the same load on the machine. The echo is the floor for those bytes; the target is
bridge p99 <= 2x the echo's.
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

from bridge import images as cameras  # noqa: E402
from bridge.client import BridgeClient, ClientConfig  # noqa: E402
from bridge.latency import LatencyStats  # noqa: E402
from genba.pixel_toy import MeanPixelPolicy, gantry_pixel_spec  # noqa: E402
from genba.server_process import child_env, die_with_parent, stop_process  # noqa: E402

TOY_CELL = "conveyor-pick"  # the toy policy's frames
TOY = "toy policy (genba/pixel_toy.py: each action is a frame's mean; no network)"
# What a controller offers for each --encodings name: JPEG is for colour only, so its depth goes PNG.
# camera-jpeg: the colour frames come from the camera as JPEG files (quality 90, encoded once before the
# run: an MJPEG camera's output), sent as they are (bridge.images.EncodedFrame); depth goes raw, as a depth
# camera gives it: the controller encodes nothing.
OFFERS = {"raw": ("raw",), "png": ("png",), "jpeg": ("jpeg", "png"), "camera-jpeg": ("jpeg",)}
CHILDREN: list[subprocess.Popen] = []  # every process this bench started, stopped however it ends
FRAME_SETS = ("84-rgbd", "224-rgb")
CROP = 224  # --frame-set 224-rgb: this square from the centre of the overview camera's render
ECHO_TARGET_P99 = 2.0  # bridge p99 <= this x the echo's
BLOCK_S = 1.0  # --echo: each controller alternates bridge and echo in blocks this long


def toy_policy(cameras: dict[str, list[int]]) -> MeanPixelPolicy:
    return MeanPixelPolicy(gantry_pixel_spec(cameras), name="toy-pixels-84")


def served_name_and_hash(bundle: str | None, cameras: dict[str, list[int]]) -> tuple[str, str]:
    """What a controller names in its hello: the bundle's manifest (no model loaded) or the toy's."""
    if bundle is None:
        policy = toy_policy(cameras)
        return policy.name, policy.spec_hash
    from policies.bundle_format import read_manifest

    manifest = read_manifest(bundle)
    return str(manifest["name"]), str(manifest["spec_hash"])


def render_frames(path: Path, scenario: str, robot: str | None, frame_set: str = "84-rgbd", steps: int = 40, seed: int = 0) -> None:
    """The cell's pixel observations (its images; 224-rgb: the centre of its overview render) over `steps`
    random actions, saved as one .npz."""
    import sim  # lazy: PyBullet only to render the frames once

    overview = frame_set == "224-rgb"
    env = sim.make_env(scenario, robot=robot, obs_mode="pixels", render_mode="rgb_array" if overview else None)
    try:
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        keys = ["overview"] if overview else [k for k, space in env.observation_space.spaces.items() if space.dtype == np.uint8]
        frames = {key: [] for key in keys}
        for _ in range(steps):
            if overview:
                image = env.render()
                top, left = (image.shape[0] - CROP) // 2, (image.shape[1] - CROP) // 2
                frames["overview"].append(np.ascontiguousarray(image[top:top + CROP, left:left + CROP, :3]))
            else:
                for key in keys:
                    frames[key].append(obs[key])
            obs, *_ = env.step(rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32))
    finally:
        env.close()
    np.savez(path, **{key: np.stack(v) for key, v in frames.items()})


def control_hz_of(scenario: str) -> float:
    from scenarios import load_scenario  # lazy: only the parent reads the cell

    return float(load_scenario(scenario).physics.control_hz)


def spawn(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), text=True,
                            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    CHILDREN.append(proc)
    return proc


# ------------------------------------------------------------------ child modes


def serve_main(inference: str, frames_file: str, bundle: str | None, device: str) -> None:
    """Child: the toy pixel policy (or the bundle) on a loopback port; prints its ready line, serves until stdin closes."""
    import threading

    from bridge.server import BridgeServer, ServerConfig

    if bundle is None:
        policy = toy_policy(cameras_in(frames_file))
    else:
        from policies.bundle import default_backend, load_bundle

        policy = load_bundle(bundle, backend=default_backend(device), device=device)
    server = BridgeServer([policy], ServerConfig(bind="tcp://127.0.0.1:*", telemetry=None, inference=inference))
    server.start()
    print(json.dumps({"event": "ready", "endpoint": server.endpoint, "inference": server.inference_mode}), flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.request_stop()), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: server.request_stop())
    server.serve_forever()


def cameras_in(frames_file: str | Path) -> dict[str, list[int]]:
    with np.load(frames_file) as data:
        return {key: list(data[key].shape[1:]) for key in data.files}


def load_frames(frames_file: str, encoding: str = "raw") -> list[dict[str, np.ndarray | cameras.EncodedFrame]]:
    """The rendered frames of each step; for camera-jpeg, each colour frame as the camera's JPEG file."""
    data = np.load(frames_file)
    steps = [{key: np.ascontiguousarray(data[key][i]) for key in data.files} for i in range(len(data[data.files[0]]))]
    if encoding == "camera-jpeg":  # the reference client's own encoder writes the camera's files (quality 90)
        for frames in steps:
            for key, frame in frames.items():
                if frame.shape[2] == 3:
                    spec = cameras.ImageSpec(key, frame.shape, "rgb", "RGB", "jpeg")
                    (entry,) = cameras.encode_frames({key: frame}, [spec])
                    frames[key] = cameras.EncodedFrame(entry["encoding"], entry["data"])
    return steps


def connected_client(endpoint: str, encoding: str, frames_file: str, index: int, bundle: str | None) -> BridgeClient:
    name, spec_hash = served_name_and_hash(bundle, cameras_in(frames_file))
    client = BridgeClient(ClientConfig(endpoint, name, spec_hash, name=f"bench-{index}", image_encodings=OFFERS[encoding]))
    client.connect(10.0)
    return client


def controller_main(endpoint: str, encoding: str, frames_file: str, hz: float, seconds: float, start_ns: int, index: int,
                    bundle: str | None, echo_endpoint: str | None = None) -> None:
    """Child: one controller stepping with frames at hz from start_ns for seconds; prints its results.

    With echo_endpoint it alternates, in blocks of BLOCK_S, between the bridge and a bare echo of the same step
    messages (each frame in the encoding the server agreed, built once), each block on a fresh connection
    (its first tick not timed), for `seconds` each: both variants see the same load on the machine, and neither
    keeps one connection's luck.
    """
    frames = load_frames(frames_file, encoding)
    client = connected_client(endpoint, encoding, frames_file, index, bundle)
    echo = EchoClient(echo_endpoint, tag_at=0) if echo_endpoint else None  # tag: a frame of its own before the step's
    try:
        welcome = client.welcome
        obs = np.zeros(welcome.obs_dim, dtype=np.float32)
        entries = [cameras.encode_frames(f, welcome.images) for f in frames]
        sizes = [sum(len(e["data"]) for e in step) for step in entries]
        sent_as = sorted({e["encoding"] for step in entries for e in step})
        period_ns, block_ns = int(1e9 / hz), int(min(BLOCK_S, seconds / 2) * 1e9)  # short runs: two blocks each at least
        # The bytes the client sends for each step (its layout and integer widths), packed once.
        messages = [[bytes(8), *client.pack_step(obs, 1, time.monotonic_ns(), period_ns // 1000, f)] for f in frames]
        steps = iter(range(1 << 62))

        def bridge_step(stats: LatencyStats | None) -> None:
            result = client.step(obs, period_ns / 1e9, frames[next(steps) % len(frames)])
            if stats is None:
                return
            if result.status == "ok":
                stats.record(result.rtt_ns)
                batches.append(result.batch)
            else:
                stats.miss()

        def echo_step(stats: LatencyStats | None) -> None:
            rtt = echo.round_trip(messages[next(steps) % len(messages)], period_ns / 1e9)
            if stats is not None:
                stats.miss() if rtt is None else stats.record(rtt)

        variants = {"bridge": bridge_step, **({"echo": echo_step} if echo else {})}
        for step in variants.values():  # warm-up: connection, allocator, OpenCV's first call
            for _ in range(20):
                step(None)
        stats = {name: LatencyStats(capacity=int(hz * seconds) + 16) for name in variants}
        batches: list[int] = []
        names, current = list(variants), None

        def once() -> None:
            nonlocal current
            name = names[(time.monotonic_ns() - start_ns) // block_ns % len(names)]
            if name == current:
                variants[name](stats[name])
                return
            # A block's first tick, not timed: a fresh connection (an echo's DEALER connects on its first
            # send, the bridge's in its handshake) and one step on it, so neither times a connection set-up.
            if current is not None:
                if name == "bridge":
                    client.drop_session("bench: a fresh connection for each block")
                    client.connect(10.0)
                else:
                    echo.reconnect()
            variants[name](None)
            current = name

        # Staggered phases, as independent cells would be.
        late = paced(period_ns, start_ns + index * period_ns // 8, start_ns + int(len(variants) * seconds * 1e9), once)
        print(json.dumps({name: {"samples_us": (st.samples_ns() / 1e3).round(1).tolist(), "misses": st.deadline_misses,
                                 "batches": batches if name == "bridge" else [], "late": late,
                                 "bytes_per_step": float(np.mean(sizes)), "sent_as": sent_as,
                                 "counts": dict(client.counts) if name == "bridge" else {"stale": echo.stale}}
                          for name, st in stats.items()}), flush=True)
    finally:
        client.close()
        if echo is not None:
            echo.close()


# ------------------------------------------------------------------ the run


def run(endpoint: str, encoding: str, n: int, frames_file: Path, hz: float, seconds: float, bundle: str | None,
        echo: str | None = None) -> list[dict]:
    """n controllers stepping through the bridge server at `endpoint` (and, given echo, through that echo in
    alternate blocks); one row per variant, the echo's first."""
    start_ns = time.monotonic_ns() + int(4e9)  # time for every controller to connect and warm up first
    extra = (["--bundle", bundle] if bundle else []) + (["--echo-at", echo] if echo else [])
    procs = [spawn("--controller", endpoint, "--encoding", encoding, "--frames", str(frames_file), "--hz", str(hz),
                   "--seconds", str(seconds), "--start-ns", str(start_ns), "--index", str(i), *extra) for i in range(n)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=2 * seconds + 60)
        if proc.returncode != 0:
            raise SystemExit(f"a controller failed (exit {proc.returncode}): {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for variant in (["echo"] if echo else []) + ["bridge"]:
        parts = [r[variant] for r in results]
        samples = np.concatenate([np.asarray(r["samples_us"], dtype=float) for r in parts])
        batches = [b for r in parts for b in r["batches"]]
        rows.append({
            "variant": variant,
            "encoding": encoding, "controllers": n, "replies": int(samples.size), "deadline_misses": sum(r["misses"] for r in parts),
            "p50_us": float(np.percentile(samples, 50)) if samples.size else None,
            "p99_us": float(np.percentile(samples, 99)) if samples.size else None,
            "max_us": float(samples.max()) if samples.size else None,
            "batch_mean": float(np.mean(batches)) if batches else None, "batch_max": int(max(batches)) if batches else None,
            "frame_bytes_per_step": float(np.mean([r["bytes_per_step"] for r in parts])),
            "sent_as": sorted({e for r in parts for e in r["sent_as"]}), "late_ticks": sum(r["late"] for r in parts),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per setting")
    parser.add_argument("--hz", type=float, help="steps per second of each controller (default: the control rate of the "
                        "bundle, or of the toy's cell)")
    parser.add_argument("--controllers", default="1,8", help="controller counts, comma-separated")
    parser.add_argument("--encodings", default="raw,png,jpeg", help="frame encodings, comma-separated")
    parser.add_argument("--inference", default="auto", choices=["auto", "inline", "thread"], help="server: where forward passes run")
    parser.add_argument("--bundle", help="serve this pixel bundle instead of the toy policy (frames from its cell)")
    parser.add_argument("--frame-set", default="84-rgbd", choices=FRAME_SETS,
                        help="the cell's pixel observation, or a 224x224 RGB crop of its overview render (toy policy only)")
    parser.add_argument("--echo", action="store_true", help="measure a bare echo of the same messages, alternating with the bridge")
    parser.add_argument("--echo-serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--echo-at", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the server runs the bundle")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--controller", help=argparse.SUPPRESS)
    parser.add_argument("--encoding", help=argparse.SUPPRESS)
    parser.add_argument("--frames", help=argparse.SUPPRESS)
    parser.add_argument("--start-ns", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_serve:
        echo_server()
        return
    if args.serve:
        serve_main(args.inference, args.frames, args.bundle, args.device)
        return
    if args.controller:
        controller_main(args.controller, args.encoding, args.frames, args.hz, args.seconds, args.start_ns, args.index, args.bundle,
                        args.echo_at)
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # the finally below stops the children
    counts = [int(n) for n in args.controllers.split(",")]
    encodings = args.encodings.split(",")
    if any(e not in OFFERS for e in encodings):
        raise SystemExit(f"--encodings {args.encodings!r}: name one or more of {', '.join(OFFERS)}")
    if args.bundle and args.frame_set != "84-rgbd":
        raise SystemExit(f"--frame-set {args.frame_set}: a bundle takes its own cell's frames (84-rgbd)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.npz"
        scenario, robot, served = TOY_CELL, None, TOY
        if args.bundle:
            from policies.bundle_format import read_manifest

            manifest = read_manifest(args.bundle)
            scenario, robot = manifest["scenario"]["name"], (manifest.get("training") or {}).get("robot")
            served = f"pixel bundle {manifest['name']!r} ({args.device})"
        if args.hz is None:
            args.hz = float(manifest["control_hz"]) if args.bundle else control_hz_of(scenario)
        render_frames(frames_file, scenario, robot, args.frame_set)
        cameras_in_summary = cameras_in(frames_file)
        server = spawn("--serve", "--inference", args.inference, "--frames", str(frames_file), "--device", args.device,
                       *(["--bundle", args.bundle] if args.bundle else []))
        try:
            ready = json.loads(server.stdout.readline() or "{}")
            if "endpoint" not in ready:
                raise SystemExit(f"the server exited before it was ready: {server.stderr.read()[-2000:]}")
            echo = None
            if args.echo:
                echo = json.loads(spawn("--echo-serve").stdout.readline() or "{}").get("endpoint")
                if echo is None:
                    raise SystemExit("the echo server exited before it was ready")
            for n in counts:
                for encoding in encodings:
                    runs.extend(run(ready["endpoint"], encoding, n, frames_file, args.hz, args.seconds, args.bundle, echo))
                    print(f"  {encoding} x {n}: done", file=sys.stderr, flush=True)
        finally:
            for proc in CHILDREN:
                if proc.stdin and not proc.stdin.closed:
                    proc.stdin.close()
                stop_process(proc)
    print(f"{'encoding':10}{'ctrl':>5}{'variant':>8}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'misses':>8}{'replies':>9}"
          f"{'batch':>7}{'kB/step':>9}  sent as")
    for r in runs:
        batch = f"{r['batch_mean']:7.2f}" if r["batch_mean"] is not None else f"{'-':>7}"
        p50, p99, top = (f"{r[k]:10.1f}" if r[k] is not None else f"{'-':>10}" for k in ("p50_us", "p99_us", "max_us"))
        print(f"{r['encoding']:10}{r['controllers']:5d}{r['variant']:>8}{p50}{p99}{top}"
              f"{r['deadline_misses']:8d}{r['replies']:9d}{batch}{r['frame_bytes_per_step'] / 1e3:9.1f}  {','.join(r['sent_as'])}")
    ratios = echo_ratios(runs)
    for r in ratios:
        if r["p99"] is None:
            print(f"bridge/echo {r['encoding']} x {r['controllers']}: no bridge reply was timed (target p99 <= "
                  f"{ECHO_TARGET_P99:g}x: MISSED); give it more --seconds")
            continue
        print(f"bridge/echo {r['encoding']} x {r['controllers']}: p50 {r['p50']:.2f}, p99 {r['p99']:.2f} "
              f"(target p99 <= {ECHO_TARGET_P99:g}x: {'met' if r['p99_met'] else 'MISSED'})")
    cameras = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in cameras_in_summary.items())
    print(f"frames: {scenario} {cameras} (jpeg: colour JPEG, depth PNG; camera-jpeg: the camera's JPEG, depth raw); "
          f"{args.hz:g} Hz per controller, {args.seconds:g} s each; "
          f"server inference {ready.get('inference')}; {os.cpu_count()} CPUs. Served by a {served}"
          + (": the figures are the bridge's cost of frames, not a model's." if served == TOY else "."))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"policy": served, "frames": f"{scenario}: {cameras}", "hz": args.hz,
                                         "seconds": args.seconds, "cpus": os.cpu_count(), "device": args.device,
                                         "inference": ready.get("inference"), "frame_set": args.frame_set, "runs": runs,
                                         "bridge_over_echo": ratios}, indent=2) + "\n")


def echo_ratios(runs: list[dict]) -> list[dict]:
    """Per setting measured both ways: bridge p50 and p99 over the echo's (None, and missed, where no bridge reply was
    timed: a short run's blocks can all fall on untimed first ticks or deadline misses)."""
    echoes = {(r["encoding"], r["controllers"]): r for r in runs if r["variant"] == "echo"}
    out = []
    for r in runs:
        e = echoes.get((r["encoding"], r["controllers"]))
        if r["variant"] == "bridge" and e is not None and e["p50_us"] and e["p99_us"]:
            timed = r["p50_us"] is not None and r["p99_us"] is not None
            p99 = r["p99_us"] / e["p99_us"] if timed else None
            out.append({"encoding": r["encoding"], "controllers": r["controllers"], "p50": r["p50_us"] / e["p50_us"] if timed else None,
                        "p99": p99, "p99_met": timed and p99 <= ECHO_TARGET_P99})
    return out


if __name__ == "__main__":
    main()
