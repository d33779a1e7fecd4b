"""Camera frames/s: the sim's camera sensor vs PyBullet's default getCameraImage, per cell and resolution.

For every registered env, two copies of the cell are built and driven to the same state (same seed,
same actions: the physics is the same, the robot's visual detail is not):
  sensor:  sim.sensors.CameraSensor on the env built for camera observations (visual_detail="low":
           collision-hull visuals for the Panda; the GP7 is drawn from primitives either way),
           rendering through the camera's PinholeCamera with the settings in Simulator.render_image;
  default: pybullet.getCameraImage on the env as the viewer builds it (full meshes), same view and
           projection matrices, default flags (segmentation computed), ER_TINY_RENDERER.
Both use the scenario's viewer camera (the whole cell) resized to each resolution, RGB and RGB-D
(depth converted to metres in both). Rounds alternate so both see the same machine load; times are
this process's CPU time (the machine is shared). Targets: 84x84 RGB-D of the Panda cells >= 5x the
default; the GP7 cells <= 3 ms per 84x84 frame.

A second table times the renderer settings on the camera path (one Panda cell, 84x84): flags and
shadows, the measurement behind Simulator.render_image.

    python bench/camera_throughput.py [--frames 20] [--rounds 3] [--env ID] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pybullet as pb  # noqa: E402

import sim  # noqa: E402
from sim.sensors import CameraSensor, depth_metres  # noqa: E402

RESOLUTIONS = ((84, 84), (160, 120), (320, 240))
PANDA_RATIO_TARGET = 5.0  # 84x84 RGB-D, sensor vs default
GP7_MS_TARGET = 3.0  # ms per 84x84 frame (RGB and RGB-D)
NEAR, FAR = 0.1, 3.0  # m


def same_scene(env_id: str, steps: int = 30):
    """The cell twice, in the same state: for the sensor (low visual detail) and for the default path (full)."""
    envs = [gym.make(env_id, visual_detail=detail).unwrapped for detail in ("low", "full")]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, envs[0].action_space.shape[0]))
    for env in envs:
        env.reset(seed=0)
        for action in actions:  # the arm away from home, parts on their way
            env.step(action)
    q = [env.robot.joint_positions() for env in envs]
    assert np.array_equal(q[0], q[1]), "the two copies of the cell drifted apart"
    return envs


def time_sensor(sensor: CameraSensor, frames: int) -> float:
    start = time.process_time()
    for _ in range(frames):
        sensor.reset()  # render every time: no frame reuse
        sensor.capture()
    return (time.process_time() - start) / frames


def time_default(env, camera, frames: int, depth: bool) -> float:
    model = CameraSensor(camera, env.sim, env.robot).model()
    view, proj = model.opengl_view_matrix(), model.opengl_projection_matrix(NEAR, FAR)
    w, h, cid = model.width, model.height, env.sim.cid
    start = time.process_time()
    for _ in range(frames):
        _, _, rgba, buffer, _ = pb.getCameraImage(w, h, view, proj, renderer=pb.ER_TINY_RENDERER, physicsClientId=cid)
        np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()
        if depth:
            depth_metres(np.asarray(buffer, dtype=np.float32).reshape(h, w), NEAR, FAR)
    return (time.process_time() - start) / frames


def measure(env_id: str, frames: int, rounds: int) -> list[dict]:
    low, full = same_scene(env_id)
    rows = []
    for w, h in RESOLUTIONS:
        for modalities in (("rgb",), ("rgb", "depth")):
            camera = low.camera.model_copy(update={"width": w, "height": h, "near": NEAR, "far": FAR, "modalities": modalities})
            sensor = CameraSensor(camera, low.sim, low.robot)
            time_sensor(sensor, 2), time_default(full, camera, 2, len(modalities) > 1)  # warm-up
            sensor_s, default_s = [], []
            for _ in range(rounds):
                sensor_s.append(time_sensor(sensor, frames))
                default_s.append(time_default(full, camera, frames, len(modalities) > 1))
            s, d = statistics.median(sensor_s), statistics.median(default_s)
            rows.append({
                "env_id": env_id, "robot": low.robot.model.name, "width": w, "height": h,
                "mode": "RGB-D" if len(modalities) > 1 else "RGB", "sensor_ms": 1e3 * s, "default_ms": 1e3 * d,
                "sensor_fps": 1 / s, "default_fps": 1 / d, "ratio": d / s, "sensor_round_ms": [1e3 * v for v in sensor_s],
                "default_round_ms": [1e3 * v for v in default_s],
            })
    low.close(), full.close()
    return rows


SETTINGS = {  # name -> getCameraImage keyword arguments
    "default flags": {},
    "no segmentation": {"flags": pb.ER_NO_SEGMENTATION_MASK},
    "no segmentation, shadow=0": {"flags": pb.ER_NO_SEGMENTATION_MASK, "shadow": 0},
    "no segmentation, shadow=1": {"flags": pb.ER_NO_SEGMENTATION_MASK, "shadow": 1},
    "segmentation, shadow=0": {"shadow": 0},
}


def measure_settings(env_id: str, frames: int, rounds: int) -> list[dict]:
    low, full = same_scene(env_id)
    camera = low.camera.model_copy(update={"width": 84, "height": 84, "near": NEAR, "far": FAR})
    model = CameraSensor(camera, low.sim, low.robot).model()
    view, proj, cid = model.opengl_view_matrix(), model.opengl_projection_matrix(NEAR, FAR), low.sim.cid
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, kwargs in SETTINGS.items():
            start = time.process_time()
            for _ in range(frames):
                pb.getCameraImage(84, 84, view, proj, renderer=pb.ER_TINY_RENDERER, physicsClientId=cid, **kwargs)
            times[name].append((time.process_time() - start) / frames)
    low.close(), full.close()
    return [{"env_id": env_id, "setting": name, "ms": 1e3 * statistics.median(t)} for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="frames per round and path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating sensor/default rounds; medians are reported")
    parser.add_argument("--env", action="append", help="env id (default: every registered genba env)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    env_ids = args.env or sim.ENV_IDS
    rows = [row for env_id in env_ids for row in measure(env_id, args.frames, args.rounds)]
    print(f"{'env':26s} {'robot':5s} {'size':>7s} {'mode':5s} {'sensor ms':>9s} {'fps':>6s} {'default ms':>10s} {'fps':>6s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['env_id']:26s} {r['robot']:5s} {r['width']:>3d}x{r['height']:<3d} {r['mode']:5s} {r['sensor_ms']:9.2f} "
              f"{r['sensor_fps']:6.0f} {r['default_ms']:10.2f} {r['default_fps']:6.0f} {r['ratio']:6.1f}")
    small = [r for r in rows if (r["width"], r["height"]) == (84, 84)]
    panda_miss = [r["env_id"] for r in small if r["robot"] == "panda" and r["mode"] == "RGB-D" and r["ratio"] < PANDA_RATIO_TARGET]
    gp7_miss = [f"{r['env_id']} {r['mode']}" for r in small if r["robot"] == "gp7" and r["sensor_ms"] > GP7_MS_TARGET]
    print(f"target Panda cells, 84x84 RGB-D, sensor >= {PANDA_RATIO_TARGET}x default: "
          + (f"MISSED by {', '.join(panda_miss)}" if panda_miss else "met"))
    print(f"target GP7 cells, 84x84, sensor <= {GP7_MS_TARGET} ms per frame: " + (f"MISSED by {', '.join(gp7_miss)}" if gp7_miss else "met"))

    panda_ids = [r["env_id"] for r in small if r["robot"] == "panda"]
    settings = measure_settings(panda_ids[0], args.frames, args.rounds) if panda_ids else []
    if settings:
        print(f"\nrenderer settings, {settings[0]['env_id']} (low visual detail), 84x84, TinyRenderer:")
        for s in settings:
            print(f"  {s['setting']:28s} {s['ms']:6.2f} ms")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"frames": args.frames, "rounds": args.rounds, "rows": rows, "settings": settings}, f, indent=2)


if __name__ == "__main__":
    main()
