"""Training configuration: dataclass defaults < scenario preset (YAML) < command-line overrides.

A preset (`policies/presets/<scenario>.yaml`, rl-zoo3 style) holds `default_algo`, a `common` block and
one block per algorithm; the resolved config is written to the run directory and read back on resume.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.errors import PolicyError
from scenarios import ScenarioError, builtin_names, load_scenario, names_a_file, resolve_path
from scenarios.naming import did_you_mean
from scenarios.yamlfile import parse_yaml_value, read_yaml

PRESET_DIR = Path(__file__).resolve().parent / "presets"
ALGOS = ("ppo", "sac", "td3", "tqc", "bc")
OFF_POLICY = ("sac", "td3", "tqc")
OBS_MODES = ("state", "perceived", "pixels")  # pixels: a CNN student, taught by the expert (--algo bc)


class ConfigError(PolicyError):
    """A preset or override that names an unknown key or holds a bad value."""


@dataclass
class BCConfig:
    """Behaviour cloning from scripted-expert demonstrations, with optional extra data rounds."""

    demo_episodes: int = 50
    """expert episodes recorded on the fly when no --demos file is given"""
    demo_noise: float = 0.0
    """DART: std of Gaussian noise added to the expert's executed motion while recording (labels stay clean)"""
    host_algo: str = "sac"
    """SB3 algorithm whose actor the cloned policy is (so it exports, evaluates and warm-starts like one)"""
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    """hidden layer sizes of the cloned actor"""
    iterations: int = 3000
    """gradient steps per fit"""
    batch_size: int = 256
    learning_rate: float = 1e-3
    rounds: int = 0
    """extra rounds after the first fit: collect round_episodes more episodes, refit on everything, evaluate"""
    round_episodes: int = 25
    round_driver: str = "expert"
    """who drives the extra episodes: expert (more DART demos) or learner (DAgger: the expert labels the learner's states)"""
    round_iterations: int | None = None
    """gradient steps per refit (None: same as iterations)"""
    chunk: int = 1
    """actions per observation (an action chunk, one control period apart; 1: a single action). The label of
    step t is the expert's actions t..t+chunk-1 of that episode (its last action repeated past the end)"""
    encoder_channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    """obs_mode pixels: channels of the student's conv layers (policies.pixel_net)"""
    grid_features: int = 0
    """obs_mode pixels: besides keypoints and maxima, each camera's last feature maps averaged over a grid of this many
    cells a side (policies.pixel_net.GridMeans: what is where, e.g. which part is in the jaws); 0: none"""
    aux_weight: float = 1.0
    """obs_mode pixels: weight of the auxiliary loss (the student also regresses the expert's privileged task
    features, standardised, from what it sees)"""
    collect_workers: int = 1
    """obs_mode pixels: processes recording expert episodes; above 1, the first demos are split among them and
    every expert-driven round is recorded ahead while the student fits (policies/pixel_collect.py)"""
    augment_shift: int = 2
    """obs_mode pixels: random image shift of up to this many pixels while fitting"""
    augment_brightness: float = 0.1
    """obs_mode pixels: colour channels get a random offset of up to this (images in [0, 1]) while fitting"""
    augment_contrast: float = 0.1
    """obs_mode pixels: colour channels get a random contrast factor 1 +- this while fitting"""
    augment_tint: float = 0.0
    """obs_mode pixels: each colour channel gets its own random gain 1 +- this while fitting (light colour, white balance)"""
    record_randomization: str | dict | None = None
    """obs_mode pixels: domain randomisation of the episodes recorded for the student only (the expert's demos and
    every round's episodes), merged over `randomization`: a shipped profile name (lighting), a YAML path or a
    mapping. The student learns from many lights; its evaluations see the cell as `randomization` alone makes it"""
    average: float = 0.998
    """obs_mode pixels: the policy is an exponential moving average of the student's weights over its gradient steps,
    this decay per step (warmed up as (1 + t) / (10 + t)); 0: the last weights. It smooths out the last steps' noise:
    on held-out bin-sort episodes, 20% lower action error than the last weights after 6,000 steps"""


@dataclass
class TrainConfig:
    """Everything that determines a training run; stored as config.yaml in the run directory."""

    scenario: str
    """built-in scenario name, YAML path, or toy env (toy-target, toy-reach)"""
    algo: str = "sac"
    """ppo | sac | td3 | tqc | bc"""
    robot: str | None = None
    """robot model override (panda, gp7); None keeps the scenario's"""
    her: bool = False
    """Hindsight Experience Replay (goal-conditioned envs, off-policy algos)"""
    steps: int = 10_000
    """env steps to train for (all envs together)"""
    n_envs: int = 1
    """parallel envs; more than one run in subprocesses"""
    seed: int = 0
    obs_mode: str = "state"
    """observations to train on: state (the simulator's exact part poses) or perceived (the same features through
    the cell's camera and perception, as a deployed cell gives them); the bundle is the same either way"""
    randomization: str | None = None
    """domain randomisation of the training and evaluation envs: a shipped profile name (shop-floor), a YAML path,
    or None (the scenario's own randomization section only); merged over the scenario's section"""
    observe_command: bool = False
    """the observation ends with the commanded tool target minus the measured tool (sim.env, observe_command): what
    the controller has sent and the arm has not yet done. With --init and --residual the base policy may have been
    trained without it: it sees the observation without these values"""
    device: str = "auto"
    """auto | cpu | cuda"""
    normalize: bool = False
    """normalise observations with running statistics (VecNormalize); stats are saved and exported"""
    eval_freq: int = 5_000
    """env steps between evaluations"""
    eval_episodes: int = 20
    checkpoint_freq: int = 10_000
    """env steps between checkpoints (model, replay buffer, normalisation statistics)"""
    keep_checkpoints: int = 2
    stop_at_success: float | None = None
    """end training early once an evaluation reaches this success rate"""
    max_wall_s: float | None = None
    """end training (evaluated, checkpointed and summarised as usual) once the run has taken this many seconds;
    `--resume --steps N` lifts it and trains on to N steps"""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of the SB3 algorithm (learning_rate, batch_size, policy_kwargs, ...)"""
    her_kwargs: dict[str, Any] = field(default_factory=lambda: {"n_sampled_goal": 4, "goal_selection_strategy": "future"})
    demos: str | None = None
    """demonstrations file (.npz from `genba demos`): BC data, or replay-buffer prefill for off-policy RL"""
    init: str | None = None
    """run directory whose policy initialises this one's actor (BC warm start)"""
    init_log_std: float | None = -2.0
    """with --init (SAC/TQC): the actor's log-std head starts at this constant, so early exploration stays near the init policy"""
    init_rollout_episodes: int = 0
    """with --init: episodes of the init policy put in the replay buffer before learning (learning_starts can then be 0)"""
    init_actor_freeze: int = 0
    """with --init: env steps during which only the critic learns, so a random critic cannot wreck the init actor"""
    residual: float | list[float] | None = None
    """with --init: learn a correction on top of the frozen init policy instead of changing its actor. The action is
    clip(init(obs) + residual * correction(obs)): one scale per action value, or one for all; the correction starts at 0"""
    bc: BCConfig = field(default_factory=BCConfig)
    preset: str | None = None
    """where the settings came from: the preset (and why it, how scaled), as `genba train` prints it; set by resolve_config"""

    def validate(self) -> "TrainConfig":
        if self.algo not in ALGOS:
            raise ConfigError(f"--algo {self.algo!r} is not supported; use one of {', '.join(ALGOS)}" + did_you_mean(self.algo, ALGOS))
        if self.her and self.algo not in OFF_POLICY:
            raise ConfigError(f"--her needs an off-policy algorithm ({', '.join(OFF_POLICY)}), not {self.algo}")
        if self.obs_mode not in OBS_MODES:
            raise ConfigError(f"obs_mode {self.obs_mode!r}: use one of {', '.join(OBS_MODES)}" + did_you_mean(self.obs_mode, OBS_MODES))
        if self.obs_mode == "pixels" and self.algo != "bc":
            raise ConfigError(f"obs_mode pixels trains a CNN student from the scripted expert: use --algo bc, not {self.algo}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device {self.device!r}: use auto, cpu or cuda")
        for name in ("steps", "n_envs", "eval_freq", "eval_episodes", "checkpoint_freq", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if type(self.bc.chunk) is not int or self.bc.chunk < 1:
            raise ConfigError(f"bc.chunk must be an integer >= 1, got {self.bc.chunk!r}")
        if type(self.bc.collect_workers) is not int or self.bc.collect_workers < 1:
            raise ConfigError(f"bc.collect_workers must be an integer >= 1, got {self.bc.collect_workers!r}")
        if type(self.bc.grid_features) is not int or self.bc.grid_features < 0:
            raise ConfigError(f"bc.grid_features must be an integer >= 0 (0: no grid), got {self.bc.grid_features!r}")
        if self.bc.round_driver not in ("expert", "learner"):
            raise ConfigError(f"bc.round_driver must be expert or learner, got {self.bc.round_driver!r}")
        if self.bc.record_randomization is not None:
            if self.obs_mode != "pixels":
                raise ConfigError(f"bc.record_randomization randomises the pixel student's recordings (obs_mode pixels), "
                                  f"not {self.obs_mode}: use randomization for the training envs")
            if not isinstance(self.bc.record_randomization, (str, dict)):
                raise ConfigError(f"bc.record_randomization must be a profile name, a YAML path or a mapping, got "
                                  f"{type(self.bc.record_randomization).__name__}")
        if self.bc.host_algo not in OFF_POLICY:
            raise ConfigError(f"bc.host_algo must be one of {OFF_POLICY}, got {self.bc.host_algo!r}")
        if self.residual is not None:
            if not self.init:
                raise ConfigError("residual: a residual learns a correction to the --init policy; give --init RUN")
            if self.algo == "bc":
                raise ConfigError("residual: learnt by RL (ppo, sac, td3, tqc), not bc")
            scales = self.residual if isinstance(self.residual, list) else [self.residual]
            if not scales or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in scales):
                raise ConfigError(f"residual: scales must be numbers > 0, got {self.residual!r}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise ConfigError(f"max_wall_s must be > 0 seconds, got {self.max_wall_s}")
        if self.stop_at_success is not None and not 0 < self.stop_at_success <= 1:
            raise ConfigError(f"stop_at_success must be in (0, 1], got {self.stop_at_success}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "<config>") -> "TrainConfig":
        data = dict(data)
        bc = data.pop("bc", None) or {}
        if not isinstance(bc, dict):
            raise ConfigError(f"{source}: bc must be a mapping of settings, got {bc!r}")
        _check_keys(data, TrainConfig, source)
        _check_keys(bc, BCConfig, f"{source}: bc")
        _check_types(data, TrainConfig, source, "")
        _check_types(bc, BCConfig, source, "bc.")
        _check_hyperparams(data.get("hyperparams") or {}, source)
        return TrainConfig(**data, bc=BCConfig(**bc))


def _check_types(data: dict, cls, source: str, prefix: str) -> None:
    """Each value of the type its field declares (a --set or YAML value of the wrong type used to fail deep in
    training: `steps=abc` at the first comparison, `hyperparams=5` in SB3, `steps=1.5` silently rounded)."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key in hints and not _fits(value, hints[key]):
            raise ConfigError(f"{source}: {prefix}{key} must be {_described(hints[key])}, got {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return True


def _described(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(a) for a in args)
    if origin is list:
        return "a list of " + {int: "integers", float: "finite numbers", str: "strings"}.get(args[0], _described(args[0]))
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", type(None): "null",
             dict: "a mapping"}
    return names.get(hint, names.get(origin, str(hint)))


# SB3 keyword arguments whose bad values fail only at the first gradient step, minutes into a run.
_POSITIVE_INT_HYPERPARAMS = ("batch_size", "n_steps", "n_epochs", "buffer_size", "gradient_steps")


def linear_schedule_start(text: str, key: str) -> float:
    """The start value of rl-zoo3's `lin_<value>` schedule (models.LinearSchedule), checked with the config."""
    try:
        if text.startswith("lin_"):
            return float(text[4:])
    except ValueError:
        pass
    raise ConfigError(f"hyperparams.{key}: {text!r} is not a number or lin_<number>")


def _check_hyperparams(hyperparams: dict, source: str) -> None:
    for key in _POSITIVE_INT_HYPERPARAMS:
        value = hyperparams.get(key)
        if value is not None and not (_fits(value, int) and value >= 1) and not (key == "gradient_steps" and value == -1):
            raise ConfigError(f"{source}: hyperparams.{key} must be an integer >= 1, got {value!r}")
    value = hyperparams.get("learning_starts")
    if value is not None and not (_fits(value, int) and value >= 0):
        raise ConfigError(f"{source}: hyperparams.learning_starts must be an integer >= 0, got {value!r}")
    for key, low, high in (("learning_rate", 0.0, None), ("clip_range", 0.0, None), ("gamma", 0.0, 1.0), ("tau", 0.0, 1.0)):
        given = value = hyperparams.get(key)
        if isinstance(value, str) and key in ("learning_rate", "clip_range"):
            try:
                value = linear_schedule_start(value, key)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        if value is None:
            continue
        if not (_fits(value, float) and value > low and (high is None or value <= high)):
            bound = f"> {low:g}" + ("" if high is None else f" and <= {high:g}")
            raise ConfigError(f"{source}: hyperparams.{key} must be a finite number {bound}, got {given!r}")
    arch = (hyperparams.get("policy_kwargs") or {}).get("net_arch") if isinstance(hyperparams.get("policy_kwargs"), dict) else None
    sizes = list(arch.values()) if isinstance(arch, dict) else [arch] if arch is not None else []  # SB3: a list, or pi/qf lists
    for layers in sizes:
        if not (isinstance(layers, list) and all(_fits(n, int) and n >= 1 for n in layers)):
            raise ConfigError(f"{source}: hyperparams.policy_kwargs.net_arch must list layer sizes >= 1, got {arch!r}")


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(data: dict, cls, source: str) -> None:
    names = _field_names(cls)
    for key in data:
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r}{did_you_mean(key, names)}; valid keys: {', '.join(names)}")


def preset_path(scenario: str) -> Path | None:
    """The shipped preset of a toy env or built-in cell, by name (`find_preset` also serves scenario files)."""
    path = PRESET_DIR / f"{Path(scenario).stem}.yaml"
    return path if path.is_file() else None


@dataclass(frozen=True)
class PresetChoice:
    """Which shipped preset a scenario trains with, the cell it was tuned on, and the scenario's own counts."""

    path: Path | None
    task_type: str | None = None
    ref_steps: int | None = None
    """max_episode_steps of the shipped cell the preset was tuned on"""
    ref_parts: int | None = None
    """parts per episode of that cell"""
    steps: int | None = None
    """the scenario's max_episode_steps"""
    parts: int | None = None
    """the scenario's parts per episode"""


def parts_per_episode(scn) -> int:
    """Parts a scenario's episode must handle for a success (1 for reach and peg insert)."""
    task = scn.task
    if task.type == "bin_sort":
        return int(task.parts_per_episode)
    if task.type in ("conveyor_pick", "palletize") and scn.parts is not None:
        return int(scn.parts.count)
    return 1


def _shipped_presets() -> list[tuple[Path, Any]]:
    """(preset, the shipped cell it is tuned on) for every preset named after a built-in scenario."""
    names = set(builtin_names())
    return [(p, load_scenario(p.stem)) for p in sorted(PRESET_DIR.glob("*.yaml")) if p.stem in names]


def find_preset(scenario: str) -> PresetChoice:
    """The shipped preset for `scenario`: by its task type, so a user's own cell file trains like the shipped cell of
    that type whatever the file is called; toy envs (no scenario file) by name.

    Each shipped preset is tuned on the built-in cell of its name, and that cell's file gives the reference
    (task type, max_episode_steps, parts per episode) `scale_preset` scales against. The file's name and its
    `name:` play no part unless two presets share a task type (then the one named like the scenario's `name:`
    wins): a copy of conveyor-pick.yaml under any name, edited or not, gets conveyor-pick's preset, scaled only
    where its counts differ, and an unedited copy gets exactly what the shipped cell gets.
    """
    try:
        resolve_path(scenario)
    except ScenarioError:
        return PresetChoice(preset_path(scenario))  # a toy env, or a name make_env will reject with its own message
    scn = load_scenario(scenario)
    matches = [(p, ref) for p, ref in _shipped_presets() if ref.task.type == scn.task.type]
    if not matches:
        return PresetChoice(None, scn.task.type, steps=scn.max_episode_steps, parts=parts_per_episode(scn))
    path, ref = next(((p, r) for p, r in matches if r.name == scn.name), matches[0])
    return PresetChoice(path, scn.task.type, ref.max_episode_steps, parts_per_episode(ref), scn.max_episode_steps,
                        parts_per_episode(scn))


# The scaling rule (scale_preset). A preset's counts are tuned for its cell's episode length L_ref and parts per
# episode P_ref. For a cell with L and P (L: max_episode_steps, the limit a user sets so the parts fit; the
# expert's own episode length would take a run to know):
# - counts in env steps (steps, eval_freq, checkpoint_freq) scale by L / L_ref, so a run covers the same number
#   of episodes, and evaluates and checkpoints as often in episodes, as the tuned one;
# - counts in episodes of demonstrations (bc.demo_episodes, bc.round_episodes) never shrink, and grow by
#   P_ref / P when the cell has fewer parts per episode, so the clone sees at least as many episodes and as many
#   demonstrated grasps as the tuned run. More parts per episode keep the episode counts: each episode then
#   shows P / P_ref times the grasps, which an episode that succeeds only when every part is placed needs
#   (per-part success ~0.9 ** (1 / P) for 90%).
# Everything else (learning rates, network sizes, iterations, DART noise, eval_episodes) is left as tuned.
STEP_COUNTS = ("steps", "eval_freq", "checkpoint_freq")
EPISODE_COUNTS = ("demo_episodes", "round_episodes")


def scale_preset(data: dict[str, Any], choice: PresetChoice) -> tuple[dict[str, Any], list[str]]:
    """`data` (a preset's merged settings) scaled to the scenario's episode length and part count, and the
    changes as `key old -> new` strings."""
    if choice.ref_steps is None or choice.steps is None:
        return data, []
    out, changes = dict(data), []
    by_length = choice.steps / choice.ref_steps
    by_parts = max(1.0, choice.ref_parts / choice.parts)
    for key in STEP_COUNTS:
        if key in out and by_length != 1:
            new = max(1, int(round(out[key] * by_length)))
            changes.append(f"{key} {out[key]} -> {new}")
            out[key] = new
    bc = dict(out.get("bc") or {})
    for key in EPISODE_COUNTS:
        if key in bc and by_parts != 1:
            new = int(math.ceil(bc[key] * by_parts))
            changes.append(f"bc.{key} {bc[key]} -> {new}")
            bc[key] = new
    if bc:
        out["bc"] = bc
    return out, changes


def _shown(path: Path) -> str:
    """A shipped preset's path from the repository root; another file's as given."""
    try:
        return str(path.resolve().relative_to(PRESET_DIR.parents[1]))
    except ValueError:
        return str(path)


def load_preset(scenario: str, preset_file: str | Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The scenario's shipped preset, or `preset_file` (e.g. the best preset a sweep wrote) in its place."""
    path = Path(preset_file) if preset_file is not None else find_preset(scenario).path
    if path is None:
        return {}, None
    if not path.is_file():
        raise ConfigError(f"--preset {path}: no such file")
    data = read_yaml(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset is a mapping with default_algo, common and algos")
    unknown = set(data) - {"default_algo", "common", "algos"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; valid: default_algo, common, algos")
    return data, path


def _merge(base: dict, update: dict) -> dict:
    """Recursive dict merge: nested blocks (hyperparams, bc) merge key by key."""
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs (dotted keys nest: hyperparams.learning_rate=3e-4); values parse as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set hyperparams.batch_size=512")
        key, raw = item.split("=", 1)
        try:
            value = parse_yaml_value(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def resolve_config(scenario: str, algo: str | None = None, overrides: dict[str, Any] | None = None,
                   preset_file: str | Path | None = None) -> TrainConfig:
    """Defaults, then the scenario's preset (or `preset_file`: common + the algorithm's block), then `overrides`.

    The shipped preset is the one of the scenario's task type (`find_preset`), scaled to its episode length and
    part count (`scale_preset`); `preset_file` is taken as it is. The resolved config's `preset` says which.
    """
    choice = find_preset(scenario) if preset_file is None else PresetChoice(Path(preset_file))
    preset, path = load_preset(scenario, choice.path)
    source = str(path) if path else "<defaults>"
    algo = algo or (overrides or {}).get("algo") or preset.get("default_algo") or "sac"
    if algo not in ALGOS:
        raise ConfigError(f"--algo {algo!r} is not supported; use one of {', '.join(ALGOS)}" + did_you_mean(algo, ALGOS))
    algos = preset.get("algos") or {}  # an algorithm without a block runs on SB3's defaults + common
    block = dict(algos.get(algo) or {})
    by_obs = block.pop("by_obs", None) or {}
    # `with_init: {...}`: settings for fine-tuning, applied when the run starts from a trained policy (--init).
    with_init = block.pop("with_init", None) or {}
    if not isinstance(with_init, dict):
        raise ConfigError(f"{source}: algos.{algo}.with_init must be a mapping of settings")
    if (overrides or {}).get("init"):
        block = _merge(block, with_init)
    data = _merge(_merge({"scenario": scenario, "algo": algo}, preset.get("common") or {}), block)
    # An algorithm's block may hold settings per observation mode (a pixel student needs other data and
    # batch sizes than a state clone): `by_obs: {pixels: {...}}` applies when training on that mode.
    obs_mode = (overrides or {}).get("obs_mode") or data.get("obs_mode") or "state"
    if not isinstance(by_obs, dict) or not all(isinstance(v, dict) for v in by_obs.values()):
        raise ConfigError(f"{source}: algos.{algo}.by_obs must map observation modes to settings")
    for mode in by_obs:
        if mode not in OBS_MODES:
            raise ConfigError(f"{source}: algos.{algo}.by_obs: unknown observation mode {mode!r}; use {', '.join(OBS_MODES)}")
    data = _merge(data, {**by_obs.get(obs_mode, {}), "obs_mode": obs_mode} if obs_mode in by_obs else {})
    data, changes = scale_preset(data, choice)
    data = _merge(data, overrides or {})
    data["scenario"], data["algo"] = run_scenario(scenario), algo
    for key in ("demos", "init", "randomization"):  # files, named as the run will need them from any folder
        if isinstance(data.get(key), str):
            data[key] = run_scenario(data[key]) if key == "randomization" else str(Path(data[key]).expanduser().resolve())
    data["preset"] = preset_note(choice, path, changes, given=preset_file is not None)
    cfg = TrainConfig.from_dict(data, f"{source} with the command line's settings" if overrides else source).validate()
    if cfg.algo == "bc" and cfg.init:  # a new run's only: a stored run that has both still loads (its init was unused)
        raise ConfigError(f"--init {cfg.init}: behaviour cloning learns from the scripted expert, not from a trained policy "
                          "(it was ignored); --init warm-starts RL (--algo ppo, sac, td3, tqc)")
    return cfg


def run_scenario(scenario: str) -> str:
    """How a run records its scenario (or a randomisation profile): a built-in or toy name as given, a file by its
    absolute path. As typed, a relative path held only in the folder it was trained from: eval, export and --resume
    from elsewhere failed."""
    return str(Path(scenario).expanduser().resolve()) if names_a_file(scenario) else scenario


def preset_note(choice: PresetChoice, path: Path | None, changes: list[str], given: bool = False) -> str:
    """Where a run's settings came from, e.g. `policies/presets/conveyor-pick.yaml (task type conveyor_pick,
    tuned for 240-step episodes with 1 part; this cell: 400 steps, 2 parts: eval_freq 10000 -> 16667, ...)`."""
    if path is None:
        why = f"no shipped preset for task type {choice.task_type}" if choice.task_type else "no preset for this env"
        return f"none (generic defaults; {why})"
    if given:
        return f"{_shown(path)} (given with --preset)"
    if choice.task_type is None:
        return f"{_shown(path)} (by name)"
    parts = lambda n: f"{n} part{'s' if n != 1 else ''}"  # noqa: E731
    why = f"task type {choice.task_type}, tuned for {choice.ref_steps}-step episodes with {parts(choice.ref_parts)}"
    if (choice.steps, choice.parts) == (choice.ref_steps, choice.ref_parts):
        return f"{_shown(path)} ({why}, like this cell)"
    return (f"{_shown(path)} ({why}; this cell: {choice.steps} steps, {parts(choice.parts)}: "
            + (", ".join(changes) if changes else "nothing to scale") + ")")
