"""Gradient steps of a pixel student: what a pixel training run's fitting costs (policies.pixel_bc.Fitter).

The cell's pixels observation gives the image and reading shapes, its preset (`--obs pixels` block) the
network, batch and augmentation; the data are random uint8 frames (the cost of a step does not depend
on what the images show). Rounds alternate between the convolutions' two memory layouts (channels_last,
what training uses, and contiguous NCHW) so both see the same machine load; times are this process's CPU
time on the CPU (the machine is shared), wall time on CUDA (synchronised). Augmentation alone is timed too.

    python bench/pixel_fit.py [CELL] [--iterations 30] [--rounds 3] [--device cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from policies.config import resolve_config  # noqa: E402
from policies.device import resolve_device  # noqa: E402
from policies.envs import make_env  # noqa: E402
from policies.pixel_bc import Fitter, new_student  # noqa: E402
from policies.pixel_data import PixelData  # noqa: E402
from policies.pixel_net import split_keys  # noqa: E402


def random_data(env, n: int, aux_dim: int, rng: np.random.Generator) -> PixelData:
    image_keys, vector_keys = split_keys(env.observation_space)
    space = env.observation_space
    images = {k: rng.integers(0, 256, (n, *space[k].shape), dtype=np.uint8) for k in image_keys}
    vectors = rng.normal(size=(n, sum(space[k].shape[0] for k in vector_keys))).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, env.action_space.shape[0])).astype(np.float32)
    return PixelData(images, vectors, actions, np.zeros(n, np.int32), np.ones(1, bool),
                     rng.normal(size=(n, aux_dim)).astype(np.float32))


def clock(device: str):
    if device.startswith("cuda"):
        def now():
            torch.cuda.synchronize()
            return time.perf_counter()
        return now
    return time.process_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", nargs="?", default="bin-sort")
    parser.add_argument("--iterations", type=int, default=30, help="gradient steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per layout; medians are reported")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    cfg = resolve_config(args.cell, "bc", {"obs_mode": "pixels", "device": device})
    env = make_env(cfg.scenario, cfg.robot, obs_mode="pixels", observe_command=cfg.observe_command)
    aux_dim = sum(size for _, size, _ in env.unwrapped.task.features())  # the privileged features the aux head regresses
    data = random_data(env, 4 * cfg.bc.batch_size, aux_dim, np.random.default_rng(0))
    net = new_student(env, data, cfg)
    env.close()
    # Each its own copy: moving a module to a memory format changes it in place.
    fitters = {name: Fitter(copy.deepcopy(net), cfg, device, channels_last=name == "channels_last") for name in ("channels_last", "contiguous")}
    now = clock(device)
    times: dict[str, list[float]] = {name: [] for name in fitters}
    for fitter in fitters.values():
        fitter.fit(data, 3, progress=False, desc="warm-up")
    for _ in range(args.rounds):
        for name, fitter in fitters.items():
            start = now()
            fitter.fit(data, args.iterations, progress=False, desc=name)
            times[name].append((now() - start) / args.iterations * 1e3)
    fitter, bc = fitters["channels_last"], cfg.bc
    images = [torch.from_numpy(data.images[k][: bc.batch_size]).to(device) for k in data.images]
    start = now()
    for _ in range(args.iterations):
        fitter.augmented(images)
    augment_ms = (now() - start) / args.iterations * 1e3
    row = {"cell": args.cell, "device": device, "batch_size": bc.batch_size, "images": {k: list(v.shape[1:]) for k, v in data.images.items()},
           "encoder_channels": list(bc.encoder_channels), "ms_per_step": {k: statistics.median(v) for k, v in times.items()},
           "augment_ms_per_step": augment_ms, "rounds_ms": times}
    step = row["ms_per_step"]
    print(f"{args.cell} on {device}, batch {bc.batch_size}, images {row['images']}")
    print(f"  gradient step: channels_last {step['channels_last']:.1f} ms, contiguous {step['contiguous']:.1f} ms "
          f"(x{step['contiguous'] / step['channels_last']:.2f}); augmentation alone {augment_ms:.1f} ms")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
