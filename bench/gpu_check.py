"""One-shot CUDA check of training and bundles, for a session lent a GPU machine (device tool).

Uses the physics-free toy envs (the device image has no pybullet for its Python 3.12). Trains the same
preset on cuda and cpu, exports, and checks bundle parity and per-call latency on each backend.
Run through bench/gpu_check.sh; writes OUT/gpu_check.json.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
out = Path(sys.argv[1]); res = {}
from policies.config import resolve_config
from policies.device import resolve_device
from policies.train import train

res["auto_device"] = resolve_device("auto")
for dev in ("cuda", "cpu"):
    t = time.monotonic()
    s = train(resolve_config("toy-target", "td3", {"device": dev, "seed": 3}), out / f"run-{dev}", progress=False)
    res[f"train_{dev}"] = {"device": s["device"], "steps": s["num_timesteps"], "wall_s": s["wall_s"], "best_success": s["best_success"],
                           "final_return": s["final_eval"]["mean_return"]}
from policies.bundle import BundleError, load_bundle
from policies.run_export import export_run
from policies.snapshot import run_snapshot

b = export_run(out / "run-cuda", out / "bundle", which="final")
model = run_snapshot(out / "run-cuda", "final").load_model(device="cuda")
obs = np.random.default_rng(0).uniform(-1, 1, (1000, 1)).astype(np.float32)
ref = model.predict(obs, deterministic=True)[0]
for backend, dev in (("torchscript", "cuda"), ("onnx", "cuda"), ("onnx", "cpu"), ("torchscript", "cpu")):
    try:
        bb = load_bundle(b, backend=backend, device=dev)
        d = float(np.abs(bb.act(obs) - ref).max())
        x = obs[0]; bb.act(x); t = time.perf_counter(); n = 2000
        for _ in range(n): bb.act(x)
        res[f"{backend}_{dev}"] = {"device": bb.device, "max_abs_diff_vs_sb3_cuda": d, "single_infer_us": 1e6 * (time.perf_counter() - t) / n}
    except BundleError as e:
        res[f"{backend}_{dev}"] = {"error": str(e)[:300]}
# a conveyor-pick-sized policy (33 -> 256x256 -> 5): per-call latency on each backend
import gymnasium as gym
from stable_baselines3 import SAC

from policies.bundle import export_bundle
from policies.toy_envs import TargetEnv

env = TargetEnv(dim=5)
env.observation_space = gym.spaces.Box(-1, 1, (33,), np.float32)
m = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, buffer_size=10, device="cuda")
bb_dir = export_bundle(m, out / "wide", feature_spec=None)
for backend, dev in (("torchscript", "cuda"), ("onnx", "cpu"), ("torchscript", "cpu")):
    try:
        bb = load_bundle(bb_dir, backend=backend, device=dev); x = np.zeros(33, np.float32); bb.act(x)
        t = time.perf_counter()
        for _ in range(2000): bb.act(x)
        res[f"wide_{backend}_{dev}_us"] = 1e6 * (time.perf_counter() - t) / 2000
    except BundleError as e:
        res[f"wide_{backend}_{dev}"] = str(e)[:200]
print(json.dumps(res, indent=1)); (out / "gpu_check.json").write_text(json.dumps(res, indent=1))
