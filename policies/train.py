"""`genba train`: one entry point that reads top to bottom.

resolve config -> run directory (new, or resumed from its latest checkpoint) -> seed -> envs ->
model (new, warm-started from --init, or loaded) -> learn with the monitor callback -> final snapshot,
summary. Behaviour cloning (`--algo bc`) branches to policies.bc after the run directory exists.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize

from policies.bc import train_bc
from policies.callbacks import FreezeActor, TrainingMonitor, state_of
from policies.config import OFF_POLICY, ConfigError, TrainConfig
from policies.demos import load_demos, obs_layout, prefill_replay_buffer, record
from policies.device import resolve_device
from policies.envs import control_hz, make_env, make_vec_env
from policies.models import TB_LOG_NAME, LinearSchedule, build_model, resumed_logger, settle_actor  # noqa: F401 (saved models pickle policies.train.LinearSchedule)
from policies.pixel_bc import train_pixel_bc
from policies.residual import Residual, residual_of, zero_correction
from policies.rundir import RunDir
from policies.sb3_policy import SB3Policy
from policies.snapshot import best_eval, open_init, open_snapshot, save_snapshot
from sim.tasks.base import COMMAND_FEATURES

COMMAND_SIZE = sum(size for _, size, _ in COMMAND_FEATURES)
# Input scale of the commanded tool target for a run that observes it beyond its init policy (per unit): the target
# leads the measured tool by millimetres to a few centimetres, and by hundredths of a radian.
COMMAND_STD = {"m": 0.01, "rad": 0.05}


def train(cfg: TrainConfig | None, out: str | Path, *, resume: bool = False, progress: bool = True,
          argv: list[str] | None = None, max_steps: int | None = None, device: str | None = None,
          on_eval: Callable[[dict[str, Any]], None] | None = None, scenario: str | None = None) -> dict[str, Any]:
    """Train (or resume) the run at `out`; returns the summary also written to out/summary.json.

    cfg is None on resume (the run's own config.yaml is used); `max_steps` extends a resumed run and
    `device` moves it (e.g. continue a CPU run on a GPU), `scenario` names its cell file's new place (recorded in
    config.yaml). `on_eval` sees every evaluation's record (as
    written to eval.jsonl); an exception it raises ends the run (a sweep prunes a trial that way).
    """
    torch.set_num_threads(1)  # small MLPs on shared cores: more threads only add contention
    if resume:
        run = RunDir.open(out)
    else:
        if cfg is None:
            raise ConfigError("a new run needs a config")
        if cfg.init:
            open_init(cfg.init)  # a bad --init fails before the run directory exists, not in one --resume would repeat
        existed = Path(out).exists()
        run = RunDir.create(out, cfg, argv)
        try:
            return _train_locked(run, cfg, resume, progress, max_steps, device, on_eval, None)
        except Exception:  # e.g. a cell the preset's observation cannot run on: a retry must not meet "already exists"
            run.discard_if_unstarted(remove_dir=not existed)
            raise
    return _train_locked(run, cfg, resume, progress, max_steps, device, on_eval, scenario)


def _train_locked(run: RunDir, cfg: TrainConfig | None, resume: bool, progress: bool, max_steps: int | None,
                  device: str | None, on_eval, scenario: str | None) -> dict[str, Any]:
    with run.training_lock():
        if resume:
            cfg = run.config()
            if max_steps is not None and max_steps != cfg.steps:
                cfg.steps = max_steps  # --steps on resume extends (or shortens) the run's target,
                cfg.max_wall_s = None  # in steps: a time limit the run had would end it at once
                run.save_config(cfg)
            if scenario is not None and scenario != cfg.scenario:
                cfg.scenario = scenario
                run.save_config(cfg)
            if device is not None:
                cfg.device = device
            run.clean_temp()  # under the lock: another trainer's temp files are its writes in progress
            if cfg.algo == "bc" and (done := run.summary()) is not None:
                return done  # finished before; nothing to continue (a BC run has no steps to extend)
        if cfg.algo == "bc" and cfg.obs_mode == "pixels":
            return train_pixel_bc(cfg, run, progress=progress, resume=resume, on_eval=on_eval)
        if cfg.algo == "bc":
            return train_bc(cfg, run, progress=progress, resume=resume, on_eval=on_eval)
        return _train_rl(cfg, run, resume, progress, on_eval)


def _train_rl(cfg: TrainConfig, run: RunDir, resume: bool, progress: bool, on_eval=None) -> dict[str, Any]:
    t0 = time.monotonic()
    device = resolve_device(cfg.device)
    ckpt_path = run.latest_checkpoint() if resume else None
    ckpt = open_snapshot(ckpt_path) if ckpt_path is not None else None
    done = run.summary()
    if resume and done is not None and done.get("num_timesteps", 0) >= cfg.steps:
        return done  # finished before; nothing to continue
    seed = cfg.seed + (ckpt.state["num_timesteps"] if ckpt else 0)  # fresh episodes after a resume
    set_random_seed(seed)

    init = open_init(cfg.init) if cfg.init and ckpt is None else None
    eval_env = make_env(cfg.scenario, cfg.robot, obs_mode=cfg.obs_mode, randomization=cfg.randomization,
                        observe_command=cfg.observe_command)
    venv = None
    try:
        source = check_init(init, cfg, eval_env) if init is not None else None
        residual = _residual(cfg, ckpt, init, eval_env, source)
        if residual is not None:
            eval_env = residual(eval_env)  # evaluations see the base and the correction together
        venv = make_vec_env(cfg.scenario, cfg.robot, cfg.n_envs, seed, obs_mode=cfg.obs_mode, randomization=cfg.randomization,
                            wrap=residual, observe_command=cfg.observe_command)
        if ckpt is not None:
            vecnorm = ckpt.load_vecnormalize(venv)
            env = vecnorm if vecnorm is not None else venv
            model = ckpt.load_model(env=env, device=device, tensorboard_log=str(run.tensorboard))
            model.set_logger(resumed_logger(run.tensorboard, model.num_timesteps))
            ckpt.load_buffer_into(model)
            state = resumed_state(run, ckpt)
            run.log_resume(model.num_timesteps)
        else:
            vecnorm = _vecnormalize(cfg, venv, init)
            env = vecnorm if vecnorm is not None else venv
            model = build_model(cfg, env, device, run.tensorboard)
            if residual is not None:
                zero_correction(model, cfg.init_log_std)
            elif init is not None:
                warm_start(model, source, init, cfg.init_log_std)
            if init is not None:
                if cfg.init_rollout_episodes:
                    _prefill_with_policy(model, vecnorm, eval_env, cfg)
            if cfg.demos and cfg.algo in OFF_POLICY:
                prefill_replay_buffer(model, load_demos(cfg.demos), eval_env)
            state = None
        monitor = TrainingMonitor(run, cfg, eval_env, control_hz(eval_env), vecnorm, resume_state=state, progress=progress,
                                  on_eval=on_eval, extra_state={"residual": residual.to_state()} if residual else None)
        history = run.eval_history() if ckpt is not None else []
        if history and history[-1]["steps"] == model.num_timesteps:
            monitor.last_eval_step = model.num_timesteps  # evaluated just before its checkpoint: not again
        callbacks = [monitor]
        if cfg.init and cfg.init_actor_freeze > model.num_timesteps:
            callbacks.append(FreezeActor(cfg.init_actor_freeze))
        remaining = max(cfg.steps - model.num_timesteps, 0)
        # reset_num_timesteps=False keeps the step counter, so LR/exploration schedules continue where they were. With
        # nothing left (resumed at its target) learn() takes no step but sets the monitor up for the final evaluation.
        try:
            model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=ckpt is None, tb_log_name=TB_LOG_NAME)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the steps since the last checkpoint (minutes at 20k-step ones)
            _checkpoint_on_interrupt(run, monitor)
            raise
        if monitor.last_eval_step != model.num_timesteps:
            monitor.evaluate()  # the final policy is always evaluated once
        latest = run.latest_checkpoint()
        if latest is None or open_snapshot(latest).state["num_timesteps"] != model.num_timesteps:
            monitor.checkpoint()  # so `--resume --steps MORE` continues from here, buffer included
        final_state = state_of(cfg, model.num_timesteps, monitor.elapsed(), monitor.counters())
        save_snapshot(run.final, model, vecnorm, state=final_state)
        summary = {
            "scenario": cfg.scenario, "robot": cfg.robot, "algo": cfg.algo, "her": cfg.her, "seed": cfg.seed,
            "device": device, "num_timesteps": int(model.num_timesteps), "target_steps": cfg.steps,
            "stopped_early": monitor.stopped_early, "wall_s": round(monitor.elapsed(), 3),
            "wall_s_this_process": round(time.monotonic() - t0, 3), "best_success": monitor.best_success,
            "final_eval": monitor.last_eval.to_dict() if monitor.last_eval else _result_of(history[-1]) if history else None,
        }
        run.write_summary(summary)
        return summary
    finally:
        if venv is not None:
            venv.close()
        eval_env.close()


def _checkpoint_on_interrupt(run: RunDir, monitor: TrainingMonitor) -> None:
    """A checkpoint at the last step the monitor saw, unless there is one there or training never started. A second
    Ctrl-C during the write leaves nothing half-written (atomic_dir)."""
    if getattr(monitor, "model", None) is None or monitor.num_timesteps == 0:
        return
    latest = run.latest_checkpoint()
    if latest is None or open_snapshot(latest).state["num_timesteps"] != monitor.num_timesteps:
        monitor.checkpoint()


def resumed_state(run: RunDir, ckpt) -> dict[str, Any]:
    """The counters of the checkpoint an RL run resumes from. Evaluations logged after it (the stretch a crash lost)
    leave eval.jsonl, as the resumed run logs its own; a best/ saved in that stretch stays, an honestly evaluated
    policy of this run, and becomes the best to beat, so best/ and the summary's best_success agree."""
    steps = ckpt.state["num_timesteps"]
    run.keep_evals(lambda record: record.get("steps", 0) <= steps)
    state = dict(ckpt.state)
    best = best_eval(run)
    if best is not None and best.get("steps", -1) > steps:
        state["best_success"], state["best_cycle_time_s"] = best["success_rate"], best.get("mean_cycle_time_s")
    return state


def _result_of(record: dict[str, Any]) -> dict[str, Any]:
    """An eval.jsonl record as EvalResult.to_dict() gave it (without the step and time it was logged at)."""
    return {k: v for k, v in record.items() if k not in ("steps", "wall_s")}


def _residual(cfg: TrainConfig, ckpt, init, env, source) -> Residual | None:
    """A residual run's base and scales: from its checkpoint when resuming (the base it started on), else from --init."""
    if ckpt is not None:
        return Residual.of_snapshot(ckpt)
    if cfg.residual is None:
        return None
    theirs, ours = source.observation_space, env.observation_space
    wider = isinstance(ours, spaces.Box) and ours.shape[0] > theirs.shape[0]  # observes_command_beyond allowed it
    try:
        return residual_of(init, cfg.residual, int(env.action_space.shape[0]), theirs.shape[0] if wider else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _vecnormalize(cfg: TrainConfig, venv, init):
    """VecNormalize for observations when asked, or when the init policy was trained behind one (then frozen)."""
    stats = init.load_vecnormalize() if init is not None else None
    if stats is not None:
        # The warm-start actor expects its own input scaling: reuse it and keep it fixed.
        vn = VecNormalize(venv, training=False, norm_obs=True, norm_reward=False, clip_obs=stats.clip_obs,
                          epsilon=stats.epsilon, norm_obs_keys=stats.norm_obs_keys)
        space = venv.observation_space
        vn.obs_rms = with_command_scales(stats.obs_rms, space.shape[0]) if isinstance(space, spaces.Box) else stats.obs_rms
        return vn
    if cfg.normalize:
        return VecNormalize(venv, norm_obs=True, norm_reward=False)
    return None


def _prefill_with_policy(model, vecnorm, env, cfg: TrainConfig) -> None:
    """Episodes of the (warm-started) policy in the replay buffer, so the critic first sees what it does."""
    # The policy drives and labels its own actions (no expert).
    episodes = record(env, None, SB3Policy(model, vecnorm), cfg.init_rollout_episodes, seed=cfg.seed * 100_000 + 900_000)
    episodes.meta = {"obs_layout": obs_layout(env.observation_space)}
    prefill_replay_buffer(model, episodes, env)


def check_init(init, cfg: TrainConfig, env):
    """The --init policy's SB3 model (on the CPU); refused if trained on another cell, robot or observation/action
    layout, before anything trains."""
    where = f"--init {cfg.init}"
    if init.is_pixel:
        raise ConfigError(f"{where}: a pixel student cannot start an RL run; give a state policy's run")
    default_robot = getattr(getattr(env.unwrapped, "scenario", None), "robot", None)
    default_robot = getattr(default_robot, "model", None)
    theirs = (Path(str(init.state.get("scenario"))).stem, init.state.get("robot") or default_robot)
    ours = (Path(cfg.scenario).stem, cfg.robot or default_robot)
    if theirs != ours:
        raise ConfigError(f"{where}: trained on {theirs[0]} ({theirs[1] or 'its robot'}); this run is {ours[0]} "
                          f"({ours[1] or 'its robot'}): fine-tune a policy of the same cell and robot")
    source = init.load_model(device="cpu")
    if observes_command_beyond(source, init, cfg, env):
        return source
    if source.observation_space != env.observation_space or source.action_space != env.action_space:
        raise ConfigError(f"{where}: its observation/action spaces ({source.observation_space.shape} -> "
                          f"{source.action_space.shape}) differ from this cell's ({env.observation_space.shape} -> "
                          f"{env.action_space.shape}); was the scenario edited since?")
    return source


def observes_command_beyond(source, init, cfg: TrainConfig, env) -> bool:
    """Whether this run observes the init policy's observation plus the commanded tool target (observe_command on a
    policy trained without it), which a residual run allows: its base keeps seeing what it was trained on."""
    if not cfg.observe_command or init.state.get("observe_command") or not isinstance(source.observation_space, spaces.Box):
        return False
    theirs, ours = source.observation_space, env.observation_space
    n = theirs.shape[0]
    extends = (isinstance(ours, spaces.Box) and ours.shape[0] == n + COMMAND_SIZE and source.action_space == env.action_space
               and np.array_equal(ours.low[:n], theirs.low) and np.array_equal(ours.high[:n], theirs.high))
    if extends and cfg.residual is None:
        raise ConfigError(f"--init {cfg.init}: trained without observe_command; on top of it, observe_command needs a residual "
                          "run (--set residual=...), whose base keeps the observation it was trained on")
    return extends


def with_command_scales(obs_rms, size: int):
    """The init policy's frozen observation statistics, extended for the commanded tool target a run observes beyond it
    (observes_command_beyond): mean 0, std 1 cm per axis and 0.05 rad, the scale at which a target leads the tool."""
    extra = size - obs_rms.mean.shape[0]
    if extra <= 0:
        return obs_rms
    scales = np.array([COMMAND_STD[unit] for _, n, unit in COMMAND_FEATURES for _ in range(n)])[:extra]
    rms = copy.deepcopy(obs_rms)
    rms.mean = np.concatenate([obs_rms.mean, np.zeros(extra)])
    rms.var = np.concatenate([obs_rms.var, scales ** 2])
    return rms


def warm_start(model, source, init, log_std: float | None = None) -> None:
    """Copy the actor of `source` (the init snapshot `init`'s model, spaces checked by check_init) into `model`
    (same network shape needed): a BC warm start for RL.

    log_std: for SAC/TQC, start the (untrained) log-std head at this constant, i.e. small exploration.
    """
    src_actor, dst_actor = getattr(source, "actor", None), getattr(model, "actor", None)
    if src_actor is None or dst_actor is None:
        raise ConfigError(f"--init needs an actor on both sides ({init.algo} -> {type(model).__name__.lower()}); use sac, td3 or tqc")
    src, dst = src_actor.state_dict(), dst_actor.state_dict()
    copied = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape}
    if not any(k.startswith(("mu", "latent_pi")) for k in copied):
        raise ConfigError(f"--init {init.path}: actor layers do not match (net_arch must be the same as the init run's)")
    dst_actor.load_state_dict({**dst, **copied})  # copies onto the model's device
    settle_actor(model, log_std)
