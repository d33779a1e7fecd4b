"""The SB3 model a training config asks for: algorithm, policy network, HER buffer, schedules."""

from __future__ import annotations

from pathlib import Path

import torch
from gymnasium import spaces
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.utils import get_latest_run_id
from stable_baselines3.her import HerReplayBuffer

from policies.config import ConfigError, TrainConfig, linear_schedule_start
from policies.snapshot import algo_class


def build_model(cfg: TrainConfig, env, device: str, tensorboard: Path | None):
    kwargs = dict(cfg.hyperparams)
    for key in ("learning_rate", "clip_range"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = schedule(kwargs[key], key)
    policy = "MultiInputPolicy" if isinstance(env.observation_space, spaces.Dict) else "MlpPolicy"
    if cfg.her:
        if not isinstance(env.observation_space, spaces.Dict):
            raise ConfigError(f"--her: {cfg.scenario} is not goal-conditioned (its observation is not a Dict)")
        kwargs["replay_buffer_class"] = HerReplayBuffer
        kwargs["replay_buffer_kwargs"] = dict(cfg.her_kwargs)
    algo = cfg.bc.host_algo if cfg.algo == "bc" else cfg.algo
    try:
        model = algo_class(algo)(policy, env, seed=cfg.seed, device=device, verbose=0,
                                 tensorboard_log=str(tensorboard) if tensorboard else None, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"hyperparams for {algo}: {exc}") from None
    if tensorboard is None:
        model.set_logger(silent_logger())
    return model


TB_LOG_NAME = "sb3"  # SB3 writes RUN/tb/sb3_1/ (a new run; a resumed one continues the newest sb3_N)


def resumed_logger(tensorboard: Path, step: int) -> Logger:
    """The TensorBoard logger for a run resumed at checkpoint `step`. SB3's own appends to the last sb3_N folder, so the
    stretch trained after the checkpoint and lost with the crash showed twice; this writer's purge_step makes
    TensorBoard drop the earlier events from step + 1 on (what is logged at `step` itself came before the checkpoint)."""
    folder = tensorboard / f"{TB_LOG_NAME}_{max(get_latest_run_id(str(tensorboard), TB_LOG_NAME), 1)}"
    return Logger(folder=str(folder), output_formats=[_PurgingTensorBoard(folder, purge_step=step + 1)])


class _PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output with a purge step: its constructor makes a writer without one."""

    def __init__(self, folder: Path, purge_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self._is_closed = False


def silent_logger() -> Logger:
    """A logger that writes nowhere: SB3's default with no tensorboard leaves an empty SB3-<time> folder in /tmp."""
    return Logger(folder=None, output_formats=[])


class LinearSchedule:
    """rl-zoo3's `lin_<value>`: value * progress_remaining (1 at the start of training, 0 at the end).

    A class, not a closure, so it pickles into the saved model and a resumed run continues it.
    """

    def __init__(self, start: float):
        self.start = float(start)

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining


def schedule(text: str, key: str):
    return LinearSchedule(linear_schedule_start(text, key))


def settle_actor(model, log_std: float | None) -> None:
    """After an off-policy actor's weights were set by hand: SAC/TQC's log-std head outputs the constant `log_std`
    (small exploration around the set actor), and a TD3/DDPG target actor copies the actor."""
    actor = model.actor
    head = getattr(actor, "log_std", None)
    if log_std is not None and isinstance(head, torch.nn.Linear):
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(log_std)
    if getattr(model, "actor_target", None) is not None:
        model.actor_target.load_state_dict(actor.state_dict())
