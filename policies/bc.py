"""Behaviour cloning from the scripted experts, with DART noise and optional extra data rounds.

The cloned policy is the actor of an SB3 off-policy model (bc.host_algo, SAC by default), trained by
regression of its deterministic action onto the expert's. So a BC run exports, evaluates and
warm-starts RL (`--init`) exactly like an RL run. Observation statistics come from the demonstrations
and are stored as a (frozen) VecNormalize, which the bundle folds in.

Data: DART (noise injection) records the expert with Gaussian noise on its executed motion and its
clean action as the label, so the data shows how to recover from small deviations; this beat DAgger on
conveyor-pick, whose phase-machine expert gives history-dependent labels off its own path. Extra rounds
add episodes driven by the expert (more DART data) or by the learner (DAgger), refit and evaluate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tqdm import tqdm

from policies.callbacks import ProgressBar, state_of
from policies.config import TrainConfig
from policies.demos import Demos, check_compatible, load_demos, obs_layout, record, save_demos, unflatten
from policies.device import resolve_device
from policies.envs import control_hz, make_env, make_expert
from policies.evaluate import EVAL_SEED_OFFSET, run_episodes
from policies.models import build_model
from policies.policy import ChunkedPolicy, replan_after
from policies.rundir import DATA_DIR, RunDir, RunError
from policies.sb3_policy import SB3Policy
from policies.snapshot import best_eval, open_snapshot, save_snapshot

# Floor on per-feature variance: a feature (nearly) constant in the demos must not blow up when it moves.
MIN_OBS_VAR = 1e-4
ROUND_SEED_OFFSET = 500_000
EVAL_SEED_STRIDE = 10_000


def demo_vecnormalize(env, demos: Demos):
    """A frozen VecNormalize whose observation statistics are the demonstrations' mean and variance."""
    vn = VecNormalize(DummyVecEnv([lambda: env]), training=False, norm_obs=True, norm_reward=False)
    layout = demos.meta["obs_layout"]
    parts = unflatten(demos.obs, layout)
    items = parts.items() if isinstance(parts, dict) else [(None, parts)]
    for key, x in items:
        rms = RunningMeanStd(shape=x.shape[1:])
        rms.mean, rms.var, rms.count = x.mean(0).astype(np.float64), np.maximum(x.var(0), MIN_OBS_VAR).astype(np.float64), len(x)
        if key is None:
            vn.obs_rms = rms
        else:
            vn.obs_rms[key] = rms
    return vn


def deterministic_action(actor, obs) -> torch.Tensor:
    """The host actor's deterministic action: tanh(mean) for SAC/TQC, the actor itself for TD3."""
    if hasattr(actor, "get_action_dist_params"):
        mean, _, _ = actor.get_action_dist_params(obs)
        return torch.tanh(mean)
    return actor(obs)


def chunk_labels(actions: np.ndarray, episode: np.ndarray, length: int) -> np.ndarray:
    """(N, length * act_dim): for each step, the expert's actions at it and the length - 1 steps after it
    in the same episode (episodes are contiguous runs); past an episode's end its last action repeats."""
    n = len(actions)
    ends = np.append(np.flatnonzero(np.diff(episode)), n - 1)  # last index of each run
    last = ends[np.searchsorted(ends, np.arange(n))]
    index = np.minimum(np.arange(n)[:, None] + np.arange(length)[None, :], last[:, None])
    return actions[index].reshape(n, -1)


class _ChunkActions(gym.Wrapper):
    """The env with an action space of `length` actions, flat: what the host model is built on (it never steps it)."""

    def __init__(self, env, length: int) -> None:
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(np.tile(low, length), np.tile(high, length), dtype=env.action_space.dtype)


def fit(model, vecnorm, demos: Demos, iterations: int, batch_size: int, lr: float, rng: np.random.Generator,
        progress: bool = False, desc: str = "bc fit", chunk: int = 1) -> float:
    """Regress the actor's deterministic action (chunk) on the expert's; returns the last batch's MSE."""
    actor, device = model.actor, model.device
    layout = demos.meta["obs_layout"]
    x = vecnorm.normalize_obs(unflatten(demos.obs, layout))
    to_t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)  # noqa: E731
    x = {k: to_t(v) for k, v in x.items()} if isinstance(x, dict) else to_t(x)
    y = to_t(demos.actions if chunk == 1 else chunk_labels(demos.actions, demos.episode, chunk))
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    actor.train()
    loss = torch.zeros(())
    for _ in tqdm(range(iterations), desc=desc, unit="it", disable=not progress, mininterval=1.0, leave=False):
        idx = torch.as_tensor(rng.integers(0, len(y), size=min(batch_size, len(y))), device=device)
        batch = {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]
        loss = torch.mean((deterministic_action(actor, batch) - y[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    actor.eval()
    return float(loss.detach().cpu())


def _record(env, expert, driver, n: int, seed: int, noise: float, progress: bool, desc: str) -> Demos:
    bar = tqdm(total=n, unit="ep", desc=desc, disable=not progress, mininterval=1.0, leave=False)
    demos = record(env, driver, expert, n, seed, on_episode=lambda ep, ok: bar.update(1), noise=noise)
    bar.close()
    return demos


def train_bc(cfg: TrainConfig, run: RunDir, progress: bool = True, resume: bool = False,
             on_eval: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    started = time.monotonic()
    bc = cfg.bc
    device = resolve_device(cfg.device)
    set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(cfg.scenario, cfg.robot, obs_mode=cfg.obs_mode, randomization=cfg.randomization,
                   observe_command=cfg.observe_command)
    hz = control_hz(env)
    try:
        expert = make_expert(env)
        # A chunked clone is the actor of a host model whose action is bc.chunk actions (flat).
        host_env = env if bc.chunk == 1 else _ChunkActions(env, bc.chunk)
        done = run.completed_rounds(lambda r: _recorded(run, r)) if resume else []
        if done:
            demos, model, vecnorm, counters = _resume(run, done, cfg, env, host_env, device, rng)
        if not done:
            if cfg.demos:
                demos = load_demos(cfg.demos)
                check_compatible(demos, env, cfg.scenario, cfg.demos)
            else:
                demos = _record(env, expert, None, bc.demo_episodes, cfg.seed * 100_000, bc.demo_noise, progress, "demos")
                demos.meta = {"obs_layout": obs_layout(env.observation_space)}
            vecnorm = demo_vecnormalize(host_env, demos)
            hyper = {"buffer_size": 1, "learning_starts": 0, "policy_kwargs": {"net_arch": list(bc.net_arch)}}
            host_cfg = TrainConfig(**{**cfg.to_dict(), "bc": bc, "her": False, "hyperparams": hyper})
            model = build_model(host_cfg, vecnorm, device, tensorboard=None)
            counters = {"env_steps": 0 if cfg.demos else len(demos), "wall_s": 0.0, "best": -1.0, "last_eval": None}
        if resume:  # once the data loaded (rounds, or --demos checked): a failed resume must not cost the log
            run.keep_evals(lambda record: record.get("round", 0) < len(done))  # a round a crash cut short is redone
        t0 = time.monotonic() - counters["wall_s"] if done else started  # resumed: on from the checkpoint's
        bar = ProgressBar(total=1 + bc.rounds, initial=len(done), enabled=progress)

        def finish_round(r: int, fresh: Demos, loss: float) -> float:
            """Evaluate, log, keep the best, then save the round's data and checkpoint (the checkpoint last: it marks
            the round complete)."""
            seed = EVAL_SEED_OFFSET + cfg.seed * 100 * EVAL_SEED_STRIDE + r * EVAL_SEED_STRIDE
            result = run_episodes(env, learner(), cfg.eval_episodes, seed, hz)
            counters["wall_s"], counters["last_eval"] = round(time.monotonic() - t0, 3), result.to_dict()
            env_steps = counters["env_steps"]
            record_ = {"steps": env_steps, "wall_s": counters["wall_s"], "round": r, "demo_transitions": len(demos),
                       "bc_loss": loss, **result.to_dict()}
            run.append_eval(record_)
            bar.write(f"[round {r}, {env_steps:,d} env steps, {record_['wall_s']:.0f} s] loss {loss:.4f} | eval: {result.line()}")
            bar.show_eval(result.success_rate)
            bar.update(1)
            state = state_of(cfg, env_steps, counters["wall_s"], {"eval": record_})
            if result.success_rate > counters["best"]:
                counters["best"] = result.success_rate
                save_snapshot(run.best, model, vecnorm, state=state)
            save_demos(fresh, round_demos(run.path, r))
            counters["rng"] = rng.bit_generator.state  # the batch sampler, so a resumed run fits as this one would
            save_snapshot(run.round_checkpoint(r), model, vecnorm, state={**state, "counters": counters})
            if on_eval is not None:
                on_eval(record_)  # after the snapshot: a run a sweep prunes here still has its best policy
            return result.success_rate

        def learner():
            """The clone as it acts: a chunk executed replan_after(chunk) actions at a time (as the twin does)."""
            policy = SB3Policy(model, vecnorm)
            return policy if bc.chunk == 1 else ChunkedPolicy(policy, bc.chunk, replan_after(bc.chunk))

        if not done:
            loss = fit(model, vecnorm, demos, bc.iterations, bc.batch_size, bc.learning_rate, rng, progress, chunk=bc.chunk)
            success = finish_round(0, demos, loss)  # a --demos file is copied: the run resumes without it, anywhere
        else:
            success = float(run.eval_history()[-1]["success_rate"])  # the last complete round's
        for r in range(len(done) or 1, bc.rounds + 1):
            if cfg.stop_at_success is not None and success >= cfg.stop_at_success:
                break
            driver = learner() if bc.round_driver == "learner" else None
            fresh = _record(env, expert, driver, bc.round_episodes, ROUND_SEED_OFFSET + cfg.seed * 100_000 + r * 1_000,
                            bc.demo_noise if driver is None else 0.0, progress, f"round {r}")
            fresh.meta = demos.meta
            counters["env_steps"] += len(fresh)
            demos = demos.extend(fresh)
            loss = fit(model, vecnorm, demos, bc.round_iterations or bc.iterations, bc.batch_size, bc.learning_rate, rng, progress,
                       chunk=bc.chunk)
            success = finish_round(r, fresh, loss)
        bar.close()
        env_steps = counters["env_steps"]
        save_snapshot(run.final, model, vecnorm, state=state_of(cfg, env_steps, time.monotonic() - t0, {}))
        summary = {"scenario": cfg.scenario, "robot": cfg.robot, "algo": "bc", "host_algo": bc.host_algo, "seed": cfg.seed,
                   "device": device, "num_timesteps": env_steps, "chunk": bc.chunk, "demo_transitions": len(demos),
                   "stopped_early": cfg.stop_at_success is not None and success >= cfg.stop_at_success,
                   "wall_s": round(time.monotonic() - t0, 3), "best_success": counters["best"],
                   "final_eval": counters["last_eval"]}
        run.write_summary(summary)
        return summary
    finally:
        env.close()


def round_demos(run_path: Path, r: int) -> Path:
    """Round r's recorded data in a state BC run (round 0: the demonstrations)."""
    return Path(run_path) / DATA_DIR / f"round_{r}.npz"


def _recorded(run: RunDir, r: int) -> Path | None:
    path = round_demos(run.path, r)
    return path if path.is_file() else None


def _resume(run: RunDir, done: list[tuple[Path, Path]], cfg: TrainConfig, env, host_env, device: str,
            rng: np.random.Generator) -> tuple[Demos, Any, VecNormalize, dict[str, Any]]:
    """The data of the `done` rounds (RunDir.completed_rounds), and the clone, its input statistics, the batch sampler
    and the counters as the last of them left them."""
    ckpt = open_snapshot(done[-1][0])
    counters = ckpt.state.get("counters")
    if not isinstance(counters, dict) or "rng" not in counters:
        raise RunError(f"{ckpt.path}: not a behaviour-cloning round checkpoint (no counters in its state.json)")
    demos = load_demos(done[0][1])
    for _, data in done[1:]:
        demos = demos.extend(load_demos(data))
    trained_on = ckpt.state.get("eval", {}).get("demo_transitions")
    if len(demos) != trained_on:
        raise RunError(f"{done[0][1]}: rounds 0-{len(done) - 1} hold {len(demos)} transitions, {ckpt.path} was trained on "
                       f"{trained_on}; was the data replaced since the run started?")
    vecnorm = ckpt.load_vecnormalize(DummyVecEnv([lambda: host_env]))
    model = ckpt.load_model(env=vecnorm, device=device)
    rng.bit_generator.state = counters["rng"]
    best = best_eval(run)
    if best is not None and best.get("round", -1) >= len(done):
        # best/ holds a round a crash cut short after saving it: it stays the best, and what a redo has to beat.
        counters["best"] = max(counters["best"], float(best["success_rate"]))
    run.log_resume(counters["env_steps"])
    return demos, model, vecnorm, counters
