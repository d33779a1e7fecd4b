"""The SB3 callback that watches a training run: progress bar, evaluation, best model, checkpoints, early stop."""

from __future__ import annotations

import sys
import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from policies.config import OFF_POLICY, TrainConfig
from policies.evaluate import EVAL_SEED_OFFSET, EvalResult, run_episodes
from policies.rundir import RunDir
from policies.sb3_policy import SB3Policy
from policies.snapshot import save_snapshot

# Each evaluation uses fresh episodes (seed block per evaluation), so a "best" is not tuned to one set.
EVAL_SEED_STRIDE = 10_000


class ProgressBar:
    """steps, steps/s, ETA and the latest evaluation's success rate; silent when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True,
                        mininterval=1.0, disable=not enabled, desc="train")

    def update(self, n: int) -> None:
        self.bar.update(n)

    def show_eval(self, success: float) -> None:
        self.bar.set_postfix_str(f"eval success {success:.0%}", refresh=False)

    def write(self, text: str) -> None:
        """A log line (evaluations): above the bar, or plain to stderr when the bar is off."""
        if self.bar.disable:
            print(text, file=sys.stderr, flush=True)
        else:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def state_of(cfg: TrainConfig, num_timesteps: int, wall_s: float, counters: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot records besides the model: enough to resume counters and to describe the policy."""
    return {"algo": cfg.algo if cfg.algo != "bc" else cfg.bc.host_algo, "trained_with": cfg.algo, "scenario": cfg.scenario,
            "robot": cfg.robot, "observe_command": cfg.observe_command, "num_timesteps": int(num_timesteps), "wall_s": round(wall_s, 3),
            "chunk": cfg.bc.chunk if cfg.algo == "bc" else 1, **counters}


class TrainingMonitor(BaseCallback):
    def __init__(self, run: RunDir, cfg: TrainConfig, eval_env, control_hz: float, vecnormalize=None,
                 resume_state: dict[str, Any] | None = None, progress: bool = True, on_eval=None,
                 extra_state: dict[str, Any] | None = None):
        super().__init__()
        self.extra_state = dict(extra_state or {})  # recorded in every snapshot's state (a residual run's base)
        self.run, self.cfg, self.eval_env, self.control_hz, self.vecnormalize = run, cfg, eval_env, control_hz, vecnormalize
        s = resume_state or {}
        self.wall_offset = float(s.get("wall_s", 0.0))
        self.next_eval = int(s.get("next_eval", cfg.eval_freq))
        self.next_checkpoint = int(s.get("next_checkpoint", cfg.checkpoint_freq))
        self.best_success = float(s.get("best_success", -1.0))
        self.best_cycle = s.get("best_cycle_time_s")  # breaks ties in success: a fine-tuned policy is better if faster
        self.n_evals = int(s.get("n_evals", 0))
        self.progress_enabled = progress
        self.on_eval = on_eval  # sees each evaluation record; what it raises ends training (a pruned sweep trial)
        self.stopped_early = False
        self.last_eval: EvalResult | None = None
        self.last_eval_step = -1

    # --- SB3 hooks ----------------------------------------------------------------------------
    def _on_training_start(self) -> None:
        self.start = time.monotonic()
        self.bar = ProgressBar(self.cfg.steps, self.num_timesteps, self.progress_enabled)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.num_timesteps >= self.next_eval:
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.cfg.eval_freq
            result = self.evaluate()
            if self.cfg.stop_at_success is not None and result.success_rate >= self.cfg.stop_at_success:
                self.stopped_early = True
                self.bar.write(f"reached {result.success_rate:.0%} >= stop_at_success {self.cfg.stop_at_success:.0%}: stopping")
                return False
        if self.cfg.max_wall_s is not None and self.elapsed() >= self.cfg.max_wall_s:
            self.stopped_early = True
            self.bar.write(f"{self.elapsed():.0f} s >= max_wall_s {self.cfg.max_wall_s:.0f} s: stopping")
            return False
        return True

    def _on_rollout_start(self) -> None:
        # Rollout start comes after the previous gradient update, so model, buffer and counter agree.
        if self.num_timesteps >= self.next_checkpoint:
            while self.next_checkpoint <= self.num_timesteps:
                self.next_checkpoint += self.cfg.checkpoint_freq
            self.checkpoint()

    def _on_training_end(self) -> None:
        self.bar.close()

    # --- actions ------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.wall_offset + time.monotonic() - self.start

    def counters(self) -> dict[str, Any]:
        return {"next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint, "best_success": self.best_success,
                "best_cycle_time_s": self.best_cycle, "n_evals": self.n_evals, **self.extra_state}

    def evaluate(self) -> EvalResult:
        seed = EVAL_SEED_OFFSET + self.cfg.seed * 100 * EVAL_SEED_STRIDE + self.n_evals * EVAL_SEED_STRIDE
        result = run_episodes(self.eval_env, SB3Policy(self.model, self.vecnormalize), self.cfg.eval_episodes, seed,
                              self.control_hz)
        self.n_evals += 1
        self.last_eval, self.last_eval_step = result, self.num_timesteps
        record = {"steps": int(self.num_timesteps), "wall_s": round(self.elapsed(), 3), **result.to_dict()}
        self.run.append_eval(record)
        self.logger.record("eval/success_rate", result.success_rate)
        self.logger.record("eval/mean_return", result.mean_return)
        if result.mean_cycle_time_s is not None:
            self.logger.record("eval/cycle_time_s", result.mean_cycle_time_s)
        self.logger.dump(self.num_timesteps)
        self.bar.show_eval(result.success_rate)
        self.bar.write(f"[{self.num_timesteps:>9,d} steps, {self.elapsed():6.0f} s] eval: {result.line()}")
        if self._better(result):
            self.best_success, self.best_cycle = result.success_rate, result.mean_cycle_time_s
            save_snapshot(self.run.best, self.model, self.vecnormalize,
                          state=state_of(self.cfg, self.num_timesteps, self.elapsed(), {**self.counters(), "eval": record}))
        if self.on_eval is not None:
            self.on_eval(record)
        return result

    def _better(self, result: EvalResult) -> bool:
        """Higher success, or the same success in a shorter cycle time."""
        if result.success_rate != self.best_success:
            return result.success_rate > self.best_success
        cycle = result.mean_cycle_time_s
        return cycle is not None and (self.best_cycle is None or cycle < self.best_cycle)

    def checkpoint(self) -> None:
        target = self.run.checkpoint_dir(self.num_timesteps)
        save_snapshot(target, self.model, self.vecnormalize, with_buffer=self.cfg.algo in OFF_POLICY,
                      state=state_of(self.cfg, self.num_timesteps, self.elapsed(), self.counters()))
        self.run.mark_latest(target, self.cfg.keep_checkpoints)


class FreezeActor(BaseCallback):
    """Keep the actor's weights fixed for the first `until` env steps (critic warm-up after a warm start).

    The actor's parameters stop requiring gradients, so SB3's actor step changes nothing while the
    critic learns the init policy's values; then they are released.
    """

    def __init__(self, until: int):
        super().__init__()
        self.until = until

    def _set(self, trainable: bool) -> None:
        for p in self.model.actor.parameters():
            p.requires_grad_(trainable)

    def _on_training_start(self) -> None:
        self._set(self.num_timesteps > self.until)

    def _on_step(self) -> bool:
        # `>`: the gradient step that follows env step `until` still belongs to the warm-up.
        if self.num_timesteps > self.until and not next(self.model.actor.parameters()).requires_grad:
            self._set(True)
        return True

    def _on_training_end(self) -> None:
        self._set(True)
