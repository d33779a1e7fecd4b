"""Expert demonstrations: record scripted-expert episodes to .npz, load them, feed a replay buffer.

File layout (numpy .npz, no pickle):
    obs, next_obs     float32 (N, obs_dim)  flat observations (Dict obs concatenated in meta["obs_layout"]["order"])
    actions           float32 (N, act_dim)  the expert's actions in the env's action space
    rewards           float32 (N,)
    terminated, truncated  bool (N,)
    episode           int32 (N,)            episode index of each transition
    episode_success   bool (E,)
    meta              JSON string: scenario, sha256, robot, obs_layout, feature_spec, expert, seed
"""

from __future__ import annotations

import json
import os
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from policies.envs import feature_spec, make_env, make_expert, scenario_info
from policies.errors import PolicyError
from policies.features import DICT_OBS_ORDER, flatten_obs
from policies.policy import Policy
from policies.rundir import temp_beside


class DemoError(PolicyError):
    """A demonstrations file that is missing, malformed, or recorded on a different scenario."""


@dataclass
class Demos:
    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode: np.ndarray
    episode_success: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_success))

    def __len__(self) -> int:
        return int(len(self.actions))

    def extend(self, other: "Demos") -> "Demos":
        offset = self.n_episodes
        cat = lambda a, b: np.concatenate([a, b])  # noqa: E731
        return Demos(cat(self.obs, other.obs), cat(self.next_obs, other.next_obs), cat(self.actions, other.actions),
                     cat(self.rewards, other.rewards), cat(self.terminated, other.terminated), cat(self.truncated, other.truncated),
                     cat(self.episode, other.episode + offset), cat(self.episode_success, other.episode_success), self.meta)


def obs_layout(space) -> dict[str, Any]:
    """How a (possibly Dict) observation space is flattened: key order and sizes."""
    if hasattr(space, "spaces"):
        keys = [k for k in DICT_OBS_ORDER if k in space.spaces] + sorted(set(space.spaces) - set(DICT_OBS_ORDER))
        return {"type": "dict", "order": keys, "sizes": [int(np.prod(space.spaces[k].shape)) for k in keys]}
    return {"type": "flat", "order": [], "sizes": [int(np.prod(space.shape))]}


def unflatten(flat: np.ndarray, layout: dict[str, Any]) -> np.ndarray | dict[str, np.ndarray]:
    if layout["type"] != "dict":
        return flat
    out, start = {}, 0
    for key, size in zip(layout["order"], layout["sizes"]):
        out[key] = flat[..., start:start + size]
        start += size
    return out


class Step(NamedTuple):
    """One labelled transition of `labelled_steps`."""

    obs: Any
    label: np.ndarray
    next_obs: Any
    reward: float
    terminated: bool
    truncated: bool
    episode: int
    privileged: Sequence[float] | None = None


def labelled_steps(env, driver: Policy | None, expert: Policy, n_episodes: int, seed: int,
                   on_episode: Callable[[int, bool], None] | None = None, noise: float = 0.0,
                   privileged: Callable[[], Sequence[float]] | None = None) -> Iterator[Step]:
    """Run `n_episodes`; the env executes the driver's actions while the expert labels every state.

    With driver None the expert drives (demonstrations); with a learner it is a DAgger round. The
    expert is asked exactly once per step: its state machine keeps timers that each call advances.
    noise > 0 (DART): the executed motion is the expert's plus Gaussian noise of that std (the last
    action component, the gripper, stays clean), while the label stays the clean expert action, so the
    data shows how to correct small deviations. on_episode(index, success) follows each episode;
    privileged() is read with each observation (what the simulator knows then, for a student to learn).
    """
    rng = np.random.default_rng(seed)
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed + ep)
        expert.reset()
        if driver is not None:
            driver.reset()
        done, info = False, {}
        while not done:
            known = None if privileged is None else privileged()
            label = np.asarray(expert.act(obs), dtype=np.float32)
            action = label if driver is None else np.asarray(driver.act(obs), dtype=np.float32)
            if noise > 0:
                action = action.copy()
                action[:-1] = np.clip(action[:-1] + rng.normal(0.0, noise, action.size - 1), -1.0, 1.0)
            next_obs, reward, terminated, truncated, info = env.step(action)
            yield Step(obs, label, next_obs, float(reward), bool(terminated), bool(truncated), ep, known)
            obs, done = next_obs, terminated or truncated
        if on_episode is not None:
            on_episode(ep, bool(info.get("is_success", False)))


def record(env, driver: Policy | None, expert: Policy, n_episodes: int, seed: int,
           on_episode: Callable[[int, bool], None] | None = None, noise: float = 0.0) -> Demos:
    """`labelled_steps` as Demos (flat observations)."""
    cols: dict[str, list] = {k: [] for k in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "episode")}
    successes: list[bool] = []

    def ended(ep: int, success: bool) -> None:
        successes.append(success)
        if on_episode is not None:
            on_episode(ep, success)

    for step in labelled_steps(env, driver, expert, n_episodes, seed, ended, noise):
        cols["obs"].append(flatten_obs(step.obs))
        cols["next_obs"].append(flatten_obs(step.next_obs))
        cols["actions"].append(step.label)
        cols["rewards"].append(step.reward)
        cols["terminated"].append(step.terminated)
        cols["truncated"].append(step.truncated)
        cols["episode"].append(step.episode)
    return Demos(np.asarray(cols["obs"], np.float32), np.asarray(cols["next_obs"], np.float32),
                 np.asarray(cols["actions"], np.float32), np.asarray(cols["rewards"], np.float32),
                 np.asarray(cols["terminated"], bool), np.asarray(cols["truncated"], bool),
                 np.asarray(cols["episode"], np.int32), np.asarray(successes, bool))


def record_demos(scenario: str, robot: str | None, n_episodes: int, seed: int = 0, progress: bool = True,
                 noise: float = 0.0, randomization: str | None = None) -> Demos:
    """Expert episodes on a scenario (with a domain-randomisation profile merged over its own, if given),
    with the metadata that `load_demos` checks against."""
    env = make_env(scenario, robot, randomization=randomization)
    try:
        expert = make_expert(env)
        bar = tqdm(total=n_episodes, unit="ep", desc="demos", disable=not progress, mininterval=1.0)
        ok = [0]

        def tick(ep: int, success: bool) -> None:
            ok[0] += success
            bar.update(1)
            bar.set_postfix_str(f"expert success {ok[0] / (ep + 1):.0%}", refresh=False)

        demos = record(env, None, expert, n_episodes, seed, tick, noise=noise)
        bar.close()
        demos.meta = {"scenario": scenario_info(scenario, env), "scenario_arg": scenario, "robot": robot,
                      "obs_layout": obs_layout(env.observation_space), "feature_spec": _jsonable(feature_spec(env)),
                      "expert": type(expert).__name__, "noise": noise, "randomization": randomization, "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return demos
    finally:
        env.close()


def demos_path(path: str | Path) -> Path:
    """Where save_demos writes `path`: numpy's savez names every file .npz."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_suffix(".npz")


def save_demos(demos: Demos, path: str | Path) -> Path:
    """Write atomically (temp file + rename): an interrupted recording leaves no half file."""
    path = demos_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, suffix=".npz")  # numpy would add .npz to a name without it
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; like run files, demonstrations are meant to be shared
    try:
        np.savez_compressed(tmp, obs=demos.obs, next_obs=demos.next_obs, actions=demos.actions, rewards=demos.rewards,
                            terminated=demos.terminated, truncated=demos.truncated, episode=demos.episode,
                            episode_success=demos.episode_success, meta=np.array(json.dumps(demos.meta)))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_demos(path: str | Path) -> Demos:
    path = Path(path)
    if not path.is_file():
        raise DemoError(f"{path}: no such demonstrations file (record one with `genba demos SCENARIO -n N -o FILE`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data.pop("meta")))
        demos = Demos(**data, meta=meta)
    # EOFError: an empty file (click would turn it into a bare "Aborted!"); BadZipFile, zlib.error: a truncated one.
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile, zlib.error, json.JSONDecodeError) as exc:
        raise DemoError(f"{path}: not a genba demonstrations file ({exc or type(exc).__name__})") from None
    for name in ("obs", "next_obs", "actions", "rewards"):
        values = getattr(demos, name)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise DemoError(f"{path}: {name} holds NaN or inf (row {int(np.argwhere(~np.isfinite(values))[0][0])})")
    return demos


def check_compatible(demos: Demos, env, scenario: str, source: str = "demos") -> None:
    """Demos must match the env's observation layout and action size (and scenario hash, when both have one)."""
    layout = obs_layout(env.observation_space)
    if demos.meta.get("obs_layout") != layout:
        raise DemoError(f"{source}: observation layout {demos.meta.get('obs_layout')} differs from {scenario}'s {layout}")
    if demos.actions.shape[1] != int(np.prod(env.action_space.shape)):
        raise DemoError(f"{source}: actions have {demos.actions.shape[1]} values, {scenario} takes {env.action_space.shape}")
    theirs, ours = (demos.meta.get("scenario") or {}).get("sha256"), scenario_info(scenario, env)["sha256"]
    if theirs and ours and theirs != ours:
        raise DemoError(f"{source}: recorded on a different version of scenario {scenario!r}, its randomization section "
                        f"included (hash {theirs[:12]} vs {ours[:12]}); re-record (with the same --randomization)")


def prefill_replay_buffer(model, demos: Demos, env) -> int:
    """Put the demonstration transitions in an off-policy model's replay buffer (one env only)."""
    if model.n_envs != 1:
        raise DemoError("demos can prefill the replay buffer of a single-env run only; use --envs 1")
    layout = demos.meta["obs_layout"]
    for i in range(len(demos)):
        timeout = bool(demos.truncated[i] and not demos.terminated[i])
        info = [{"TimeLimit.truncated": timeout}]
        if timeout:
            info[0]["terminal_observation"] = unflatten(demos.next_obs[i], layout)
        obs = _batch(unflatten(demos.obs[i], layout))
        next_obs = _batch(unflatten(demos.next_obs[i], layout))
        done = np.array([demos.terminated[i] or demos.truncated[i]])
        model.replay_buffer.add(obs, next_obs, demos.actions[i][None], demos.rewards[i:i + 1], done, info)
    return len(demos)


def _batch(x):
    return {k: v[None] for k, v in x.items()} if isinstance(x, dict) else x[None]


def _jsonable(x):
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
