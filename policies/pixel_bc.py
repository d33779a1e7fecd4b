"""Teacher-student behaviour cloning from pixels (`genba train CELL --obs pixels`).

The teacher is the scripted expert, which reads the simulator's exact state; the student is a CNN
(policies.pixel_net) that sees only what a real cell gives it: camera images and the robot's own
readings. Round 0 records the expert with DART noise on its executed motion (labels stay clean), then
each extra round records more episodes, driven by the expert again or by the student (DAgger: the
expert labels the states the student visits), refits on everything and evaluates on fresh seeds. The
best evaluation is the run's `best` snapshot.

Images stay uint8 in memory (a float copy of 20k 84x84 RGB-D frames would be 2 GB); each batch is
gathered, moved (pinned memory, non-blocking, on CUDA), converted and augmented on the device. Mixed
precision (bfloat16 autocast) on CUDA. The policy evaluated and saved is the moving average of the student's
weights (bc.average). Every round leaves its data (`data/round_<r>.npz`) and a
checkpoint (network + optimiser), so an interrupted run resumes at the round after the last complete one.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from policies.bc import EVAL_SEED_STRIDE, ROUND_SEED_OFFSET, chunk_labels
from policies.callbacks import ProgressBar, state_of
from policies.config import TrainConfig
from policies.device import resolve_device
from policies.envs import control_hz, make_env, make_expert
from policies.evaluate import EVAL_SEED_OFFSET, run_episodes
from policies.pixel_collect import Collector
from policies.pixel_data import PixelData, record_pixels, recorded_round, round_data_dir
from policies.pixel_net import PixelPolicy, PixelPolicyNet, augment, camera_groups, split_keys
from policies.policy import ChunkedPolicy, replan_after
from policies.rundir import RunDir
from policies.snapshot import PIXEL_MODEL, save_pixel_snapshot
from scenarios.randomization import Overlay, merge_overlays

MIN_VECTOR_STD = 1e-2  # floor: a reading (nearly) constant in the demos must not blow up when it moves


class Fitter:
    """The student, its optimiser, and the regression of its actions onto the expert's labels."""

    def __init__(self, net: PixelPolicyNet, cfg: TrainConfig, device: str, writer=None, channels_last: bool = True) -> None:
        bc = cfg.bc
        # channels_last: the convolutions' faster layout (bench/pixel_fit.py); the state dict's values are the same.
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.net, self.bc, self.device, self.writer = net.to(device, memory_format=self.layout), bc, device, writer
        self.opt = torch.optim.Adam(net.parameters(), lr=bc.learning_rate)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.colours = net.colour_channels()
        self.iterations_done = 0
        # The policy: the weights' moving average (bc.average), or the weights themselves.
        self.policy = copy.deepcopy(self.net).eval().requires_grad_(False) if bc.average > 0 else self.net

    def fit(self, data: PixelData, iterations: int, progress: bool, desc: str) -> float:
        bc, net, device = self.bc, self.net, self.device
        keys = list(data.images)
        labels = data.actions if bc.chunk == 1 else chunk_labels(data.actions, data.episode, bc.chunk)
        # The auxiliary targets, standardised: each privileged feature counts alike, whatever its unit.
        known = (data.privileged - data.privileged.mean(0)) / np.maximum(data.privileged.std(0), MIN_VECTOR_STD)
        known = known.astype(np.float32)
        cuda = device.startswith("cuda")
        net.train()
        loss = torch.zeros(())
        for _ in tqdm(range(iterations), desc=desc, unit="it", disable=not progress, mininterval=1.0, leave=False):
            idx = torch.randint(0, len(labels), (min(bc.batch_size, len(labels)),), generator=self.rng).numpy()
            batch = [torch.from_numpy(data.images[k][idx]) for k in keys] + [
                torch.from_numpy(a[idx]) for a in (data.vectors, labels, known)]
            if cuda:
                batch = [t.pin_memory().to(device, non_blocking=True) for t in batch]
            *images, vectors, target, target_known = batch
            pixels = self.augmented(images)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                features = net.features(pixels, vectors)
                action = net.head(features)
            loss = torch.mean((action.float() - target) ** 2)
            if net.aux_head is not None and bc.aux_weight > 0:
                loss = loss + bc.aux_weight * torch.mean((net.aux_head(features).float() - target_known) ** 2)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.iterations_done += 1
            if self.policy is not self.net:
                self._average()
            if self.writer is not None and self.iterations_done % 100 == 0:
                self.writer.add_scalar("bc/loss", loss.item(), self.iterations_done)
        net.eval()
        return float(loss.detach().cpu())

    def augmented(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """A batch of uint8 images (per input, on the device) as the network takes them while fitting: per camera
        floats, augmented, in the convolutions' layout."""
        bc = self.bc
        return [augment(p, self.rng, bc.augment_shift, bc.augment_brightness, bc.augment_contrast, colour, bc.augment_tint)
                .contiguous(memory_format=self.layout) for p, colour in zip(self.net.images_to_float(images), self.colours)]

    @torch.no_grad()
    def _average(self) -> None:
        """policy += (1 - decay) (weights - policy), the decay warmed up as in tf.train.ExponentialMovingAverage
        (num_updates): the first steps' weights, far from trained, do not linger in the average."""
        t = self.iterations_done
        decay = min(self.bc.average, (1 + t) / (10 + t))
        for averaged, weights in zip(self.policy.parameters(), self.net.parameters()):
            averaged.lerp_(weights, 1 - decay)

    def state(self) -> dict[str, Any]:
        """What resuming needs beyond the policy's snapshot: the optimiser, the sampler, the (unaveraged) weights."""
        return {"optimizer": self.opt.state_dict(), "rng": self.rng.get_state(), "iterations_done": self.iterations_done,
                "weights": self.net.state_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.iterations_done = int(state["iterations_done"])
        if "weights" in state:  # the network was built from the snapshot: the policy's (averaged) weights
            self.net.load_state_dict(state["weights"])


def new_student(env, data: PixelData, cfg: TrainConfig) -> PixelPolicyNet:
    """The CNN for this env's images and readings, its vector normalisation taken from the first data."""
    act_dim = int(np.prod(env.action_space.shape)) * cfg.bc.chunk
    shapes = [data.images[k].shape[1:] for k in data.images]
    std = np.maximum(data.vectors.std(0), MIN_VECTOR_STD)
    return PixelPolicyNet(shapes, data.vectors.shape[1], act_dim, data.vectors.mean(0), std, cfg.bc.encoder_channels,
                          cfg.bc.net_arch, aux_dim=data.privileged.shape[1], groups=camera_groups(list(data.images)),
                          grid=cfg.bc.grid_features)


def student_envs(cfg: TrainConfig) -> tuple[gym.Env, gym.Env, Overlay | None]:
    """The cell the student is evaluated in (with cfg.randomization), the one its episodes are recorded in (the
    same env without bc.record_randomization), and the randomisation of the recordings: cfg.randomization and
    bc.record_randomization merged (for the collector's workers too)."""
    recording = merge_overlays(cfg.randomization, cfg.bc.record_randomization)
    env = make_env(cfg.scenario, cfg.robot, obs_mode="pixels", randomization=cfg.randomization, observe_command=cfg.observe_command)
    if cfg.bc.record_randomization is None:
        return env, env, recording
    try:
        record_env = make_env(cfg.scenario, cfg.robot, obs_mode="pixels", randomization=recording, observe_command=cfg.observe_command)
    except BaseException:
        env.close()
        raise
    return env, record_env, recording


def train_pixel_bc(cfg: TrainConfig, run: RunDir, progress: bool = True, resume: bool = False,
                   on_eval: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    started = time.monotonic()  # wall_s counts everything a fresh run does: env, workers, demos, fits, evaluations
    bc = cfg.bc
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    env, record_env, recording = student_envs(cfg)
    writer, collector = None, None
    try:
        hz = control_hz(env)
        collector = Collector(cfg.scenario, cfg.robot, bc.collect_workers, recording, cfg.observe_command) if bc.collect_workers > 1 else None
        expert = make_expert(record_env)
        image_keys, vector_keys = split_keys(env.observation_space)
        inputs = {"student": "pixels", "inputs": {"images": image_keys, "vector": vector_keys}}  # what load_pixel_policy reads
        done = run.completed_rounds(lambda r: recorded_round(run.path, r)) if resume else []
        if done:
            data, fitter, counters = _resume(run, done, cfg, device)
            # The lost round's scalars (fit iterations past the checkpoint's) are hidden, not shown beside the redone ones.
            writer = fitter.writer = _tensorboard(run, purge_step=fitter.iterations_done + 1)
        else:
            writer = _tensorboard(run)
            demos = (cfg.seed * 100_000, bc.demo_noise)
            data = collector.record(bc.demo_episodes, *demos).result() if collector else \
                _record(record_env, expert, None, bc.demo_episodes, *demos, progress, "demos")
            fitter, counters = None, {"env_steps": len(data), "wall_s": 0.0, "best": -1.0}
        t0 = time.monotonic() - counters["wall_s"] if done else started  # resumed: on from the checkpoint's
        bar = ProgressBar(total=1 + bc.rounds, initial=len(done), enabled=progress)

        def learner():
            policy = PixelPolicy(fitter.policy, image_keys, vector_keys, device)
            return policy if bc.chunk == 1 else ChunkedPolicy(policy, bc.chunk, replan_after(bc.chunk))

        def finish_round(r: int, fresh: PixelData, loss: float) -> float:
            seed = EVAL_SEED_OFFSET + cfg.seed * 100 * EVAL_SEED_STRIDE + r * EVAL_SEED_STRIDE
            result = run_episodes(env, learner(), cfg.eval_episodes, seed, hz)
            counters["wall_s"] = round(time.monotonic() - t0, 3)
            record = {"steps": counters["env_steps"], "wall_s": counters["wall_s"], "round": r, "demo_transitions": len(data),
                      "bc_loss": loss, **result.to_dict()}
            run.append_eval(record)
            if writer is not None:
                # On the fit-iteration axis, as bc/loss: one axis lets a resume hide a lost round's scalars.
                writer.add_scalar("eval/success_rate", result.success_rate, fitter.iterations_done)
                writer.flush()
            bar.write(f"[round {r}, {counters['env_steps']:,d} env steps, {counters['wall_s']:.0f} s] loss {loss:.4f} | eval: {result.line()}")
            bar.show_eval(result.success_rate)
            bar.update(1)
            state = state_of(cfg, counters["env_steps"], counters["wall_s"], {"eval": record, **inputs})
            if result.success_rate > counters["best"]:
                counters["best"] = result.success_rate
                save_pixel_snapshot(run.best, fitter.policy, state=state)
            fresh.save(round_data_dir(run.path, r))
            save_pixel_snapshot(run.round_checkpoint(r), fitter.policy, state=state,
                                extra={"trainer": fitter.state(), "counters": counters})
            if on_eval is not None:
                on_eval(record)
            return result.success_rate

        rounds = range(len(done) or 1, bc.rounds + 1)
        round_seed = lambda r: ROUND_SEED_OFFSET + cfg.seed * 100_000 + r * 1_000  # noqa: E731
        # Recorded while the student fits (dropped at close if evaluation succeeds first).
        ahead = {r: collector.record(bc.round_episodes, round_seed(r), bc.demo_noise) for r in rounds} \
            if collector and bc.round_driver == "expert" else {}
        if fitter is None:
            fitter = Fitter(new_student(env, data, cfg), cfg, device, writer)
            loss = fitter.fit(data, bc.iterations, progress, "fit")
            success = finish_round(0, data, loss)
        else:
            success = float(run.eval_history()[-1]["success_rate"])  # the last complete round's
        for r in rounds:
            if cfg.stop_at_success is not None and success >= cfg.stop_at_success:
                break
            driver = learner() if bc.round_driver == "learner" else None
            fresh = ahead[r].result() if r in ahead else \
                _record(record_env, expert, driver, bc.round_episodes, round_seed(r), bc.demo_noise if driver is None else 0.0,
                        progress, f"round {r}")
            counters["env_steps"] += len(fresh)
            data = data.extend(fresh)
            loss = fitter.fit(data, bc.round_iterations or bc.iterations, progress, f"fit {r}")
            success = finish_round(r, fresh, loss)
        bar.close()
        wall = time.monotonic() - t0
        save_pixel_snapshot(run.final, fitter.policy, state=state_of(cfg, counters["env_steps"], wall, inputs))
        last = run.eval_history()[-1] if run.eval_history() else None
        summary = {"scenario": cfg.scenario, "robot": cfg.robot, "algo": "bc", "obs_mode": "pixels", "seed": cfg.seed,
                   "device": device, "num_timesteps": counters["env_steps"], "chunk": bc.chunk, "demo_transitions": len(data),
                   "stopped_early": cfg.stop_at_success is not None and success >= cfg.stop_at_success,
                   "wall_s": round(wall, 3), "best_success": counters["best"], "final_eval": last}
        run.write_summary(summary)
        return summary
    finally:
        env.close()
        if record_env is not env:
            record_env.close()
        if collector is not None:
            collector.close()
        if writer is not None:
            writer.close()


def _resume(run: RunDir, done: list[tuple[Path, Path]], cfg: TrainConfig, device: str) -> tuple[PixelData, Fitter, dict[str, Any]]:
    """The data of the `done` rounds (RunDir.completed_rounds), and the student, optimiser and counters as the last left them."""
    data = PixelData.load_joined([round_data for _, round_data in done])
    last = len(done) - 1
    ckpt = torch.load(done[-1][0] / PIXEL_MODEL, map_location="cpu", weights_only=False)
    net = PixelPolicyNet.from_config(ckpt["config"])
    net.load_state_dict(ckpt["state_dict"])
    fitter = Fitter(net, cfg, device)
    fitter.restore(ckpt["trainer"])
    run.keep_evals(lambda record: record.get("round", 0) <= last)  # a round a crash cut short is redone
    run.log_resume(ckpt["counters"]["env_steps"])
    return data, fitter, ckpt["counters"]


def _record(env, expert, driver, n: int, seed: int, noise: float, progress: bool, desc: str) -> PixelData:
    bar = tqdm(total=n, unit="ep", desc=desc, disable=not progress, mininterval=1.0, leave=False)
    data = record_pixels(env, driver, expert, n, seed, noise, on_episode=lambda ep, ok: bar.update(1))
    bar.close()
    return data


def _tensorboard(run: RunDir, purge_step: int | None = None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional, as for the SB3 algorithms
        return None
    return SummaryWriter(str(run.tensorboard / "pixel_bc"), purge_step=purge_step)
