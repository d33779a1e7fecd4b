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
from policies.demos import Demos, check_compatible, load_demos, obs_layout, record, unflatten
from policies.device import resolve_device
from policies.envs import control_hz, make_env, make_expert
from policies.evaluate import EVAL_SEED_OFFSET, run_episodes
from policies.models import build_model
from policies.policy import ChunkedPolicy, replan_after
from policies.rundir import RunDir
from policies.sb3_policy import SB3Policy
from policies.snapshot import save_snapshot

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


def train_bc(cfg: TrainConfig, run: RunDir, progress: bool = True,
             on_eval: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    bc = cfg.bc
    device = resolve_device(cfg.device)
    set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(cfg.scenario, cfg.robot, obs_mode=cfg.obs_mode, randomization=cfg.randomization,
                   observe_command=cfg.observe_command)
    hz = control_hz(env)
    env_steps = 0
    try:
        expert = make_expert(env)
        if cfg.demos:
            demos = load_demos(cfg.demos)
            check_compatible(demos, env, cfg.scenario, cfg.demos)
        else:
            demos = _record(env, expert, None, bc.demo_episodes, cfg.seed * 100_000, bc.demo_noise, progress, "demos")
            demos.meta = {"obs_layout": obs_layout(env.observation_space)}
            env_steps += len(demos)
        # A chunked clone is the actor of a host model whose action is bc.chunk actions (flat).
        vecnorm = demo_vecnormalize(env if bc.chunk == 1 else _ChunkActions(env, bc.chunk), demos)
        hyper = {"buffer_size": 1, "learning_starts": 0, "policy_kwargs": {"net_arch": list(bc.net_arch)}}
        host_cfg = TrainConfig(**{**cfg.to_dict(), "bc": bc, "her": False, "hyperparams": hyper})
        model = build_model(host_cfg, vecnorm, device, tensorboard=None)
        bar = ProgressBar(total=1 + bc.rounds, initial=0, enabled=progress)
        best, last = -1.0, None

        def evaluate(round_: int) -> float:
            nonlocal best, last
            seed = EVAL_SEED_OFFSET + cfg.seed * 100 * EVAL_SEED_STRIDE + round_ * EVAL_SEED_STRIDE
            result = run_episodes(env, learner(), cfg.eval_episodes, seed, hz)
            last = result
            record_ = {"steps": env_steps, "wall_s": round(time.monotonic() - t0, 3), "round": round_,
                       "demo_transitions": len(demos), "bc_loss": loss, **result.to_dict()}
            run.append_eval(record_)
            bar.write(f"[round {round_}, {env_steps:,d} env steps, {record_['wall_s']:.0f} s] loss {loss:.4f} | eval: {result.line()}")
            bar.show_eval(result.success_rate)
            bar.update(1)
            if result.success_rate > best:
                best = result.success_rate
                save_snapshot(run.best, model, vecnorm, state=state_of(cfg, env_steps, time.monotonic() - t0, {"eval": record_}))
            if on_eval is not None:
                on_eval(record_)  # after the snapshot: a run a sweep prunes here still has its best policy
            return result.success_rate

        def learner():
            """The clone as it acts: a chunk executed replan_after(chunk) actions at a time (as the twin does)."""
            policy = SB3Policy(model, vecnorm)
            return policy if bc.chunk == 1 else ChunkedPolicy(policy, bc.chunk, replan_after(bc.chunk))

        loss = fit(model, vecnorm, demos, bc.iterations, bc.batch_size, bc.learning_rate, rng, progress, chunk=bc.chunk)
        success = evaluate(0)
        for r in range(1, bc.rounds + 1):
            if cfg.stop_at_success is not None and success >= cfg.stop_at_success:
                break
            driver = learner() if bc.round_driver == "learner" else None
            fresh = _record(env, expert, driver, bc.round_episodes, ROUND_SEED_OFFSET + cfg.seed * 100_000 + r * 1_000,
                            bc.demo_noise if driver is None else 0.0, progress, f"round {r}")
            fresh.meta = demos.meta
            env_steps += len(fresh)
            demos = demos.extend(fresh)
            loss = fit(model, vecnorm, demos, bc.round_iterations or bc.iterations, bc.batch_size, bc.learning_rate, rng, progress,
                       chunk=bc.chunk)
            success = evaluate(r)
        bar.close()
        save_snapshot(run.final, model, vecnorm, state=state_of(cfg, env_steps, time.monotonic() - t0, {}))
        summary = {"scenario": cfg.scenario, "robot": cfg.robot, "algo": "bc", "host_algo": bc.host_algo, "seed": cfg.seed,
                   "device": device, "num_timesteps": env_steps, "chunk": bc.chunk, "demo_transitions": len(demos),
                   "stopped_early": cfg.stop_at_success is not None and success >= cfg.stop_at_success,
                   "wall_s": round(time.monotonic() - t0, 3), "best_success": best,
                   "final_eval": last.to_dict() if last else None}
        run.write_summary(summary)
        return summary
    finally:
        env.close()
