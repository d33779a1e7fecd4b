"""The run directory: resolved config, provenance, and crash-safe (atomic) writes.

    runs/NAME/
      config.yaml        resolved TrainConfig
      meta.json          seed, command, package versions, git revision, start time
      eval.jsonl         one line per evaluation (steps, wall seconds, success rate, ...)
      checkpoints/       step_000010000/ (model.zip, replay_buffer.pkl, vecnormalize.pkl, state.json)
                         LATEST names the newest complete one; behaviour cloning: round_<r>/ after each round
      data/              behaviour cloning: each round's recorded data (round_<r>.npz; pixels: round_<r>/steps.npz)
      best/  final/      model.zip (+ vecnormalize.pkl), state.json
      tb/                TensorBoard logs
      summary.json       written when training ends

Every snapshot is written to a hidden temp directory and renamed into place, so a crash (even SIGKILL)
leaves either the previous snapshot or the new one, never a half-written one.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from policies.config import ConfigError, TrainConfig
from policies.errors import PolicyError
from scenarios.yamlfile import read_yaml

CONFIG_FILE, META_FILE, EVAL_LOG, SUMMARY_FILE = "config.yaml", "meta.json", "eval.jsonl", "summary.json"
LOCK_FILE = ".training.lock"  # holds the pid of the process training the run
DATA_DIR = "data"  # behaviour cloning: each round's recorded data
LATEST = "LATEST"
REPO_ROOT = Path(__file__).resolve().parents[1]


class RunError(PolicyError):
    """A run directory that cannot be created, resumed or read."""


TEMP_PREFIX = ".tmp-"  # every temporary beside its target: .tmp-NAME.PID.RANDOM[SUFFIX]


def temp_beside(target: Path, suffix: str = "", directory: bool = False) -> Path:
    """A new hidden file (or directory) beside `target` for a write that is renamed onto it when complete. Its name
    holds this process's pid, so a later write to `target` can remove what a killed writer left (sweep_stale_temps)."""
    sweep_stale_temps(target)
    prefix = f"{_temp_stem(target)}{os.getpid()}."
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


def sweep_stale_temps(target: Path) -> None:
    """Remove the temporaries of writes to `target` whose process is gone (SIGKILL, power loss): never renamed into
    place, so nothing reads them. A live writer's (another process's, or this one's) are left alone."""
    stem = _temp_stem(target)
    # STEM PID . mkstemp's 8 random characters [. suffix]: exactly, so another target's (NAME.5's for NAME) is not taken
    # for a writer's with pid 5
    own = re.compile(re.escape(stem) + r"(\d+)\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?")
    for p in target.parent.glob(glob.escape(stem) + "*"):
        match = own.fullmatch(p.name)
        if match is not None and not process_alive(int(match.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _temp_stem(target: Path) -> str:
    # The name is only a hint for people: cut so the pid and mkstemp's random part still fit in 255 bytes.
    name = target.name.encode()[:200].decode(errors="ignore")
    return f"{TEMP_PREFIX}{name}."


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (a zombie or a reused pid counts: the caller errs toward keeping)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + fsync + rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces `target` (the old one is removed only afterwards). A `target`
    that is a symlink keeps it: the directory it points to is replaced (a link replaced by a directory was lost)."""
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target, directory=True)
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700
        yield tmp
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.parent / f".old-{target.name}.{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(target: Path) -> Path | None:
    """`target`, or the previous version a crash between two renames left as .old-<name>.*."""
    if target.is_dir():
        return target
    olds = sorted(target.parent.glob(f".old-{target.name}.*"))
    return olds[-1] if olds else None


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        # --no-optional-locks: a plain status refreshes the index under .git/index.lock, and one killed by the
        # timeout (a loaded machine) left that lock behind, so the user's next git command failed.
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("genba", "numpy", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "pybullet", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- paths --------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    # --- one trainer at a time -----------------------------------------------------------------
    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held while a process trains this run: a second --resume (a job thought dead) would write the same
        checkpoints, best/ and eval.jsonl over the first's. The kernel drops the lock when its holder dies."""
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RunError(f"{self.path} is being trained by another process (pid {holder}); wait for it to end or "
                               "stop it, then --resume") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def discard_if_unstarted(self, remove_dir: bool) -> None:
        """Remove a run that failed before it trained anything (only its config, meta and lock written), so the same
        command can be retried; `remove_dir` also removes the directory itself (it did not exist before)."""
        written = {p.name for p in self.path.iterdir()} if self.path.is_dir() else set()
        if not written <= {CONFIG_FILE, META_FILE, LOCK_FILE}:
            return  # an evaluation, checkpoint or log exists: the run is the user's to resume or delete
        for name in written:
            (self.path / name).unlink(missing_ok=True)
        if remove_dir:
            self.path.rmdir()

    # --- create / open ------------------------------------------------------------------------
    @staticmethod
    def create(path: str | Path, cfg: TrainConfig, argv: list[str] | None = None) -> "RunDir":
        run = RunDir(path)
        if run.path.exists() and any(run.path.iterdir()):
            raise RunError(f"{run.path} already exists; pass --resume to continue it, or choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        run.save_config(cfg)
        meta = {"seed": cfg.seed, "command": argv if argv is not None else sys.argv, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "git_revision": git_revision(), "versions": package_versions(), "host": platform.node()}
        atomic_write_text(run.path / META_FILE, json.dumps(meta, indent=2) + "\n")
        return run

    @staticmethod
    def open(path: str | Path) -> "RunDir":
        run = RunDir(path)
        if not (run.path / CONFIG_FILE).is_file():
            raise RunError(f"{run.path}: not a run directory ({CONFIG_FILE} missing)")
        return run

    def save_config(self, cfg: TrainConfig) -> None:
        atomic_write_text(self.path / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def config(self) -> TrainConfig:
        data = read_yaml(self.path / CONFIG_FILE, RunError)
        if not isinstance(data, dict):
            raise RunError(f"{self.path / CONFIG_FILE}: expected the run's training settings (a mapping), got "
                           f"{type(data).__name__}")
        try:
            return TrainConfig.from_dict(data, str(self.path / CONFIG_FILE)).validate()
        except (ConfigError, TypeError) as exc:
            raise RunError(f"{self.path / CONFIG_FILE}: {exc}") from None

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / META_FILE).read_text())
        except (OSError, ValueError) as exc:  # cut short, hand-edited or gone: named, not a traceback
            raise RunError(f"{self.path / META_FILE}: cannot be read as the run's record ({exc})") from None

    def log_resume(self, steps_done: int) -> None:
        meta = self.meta()
        meta.setdefault("resumes", []).append({"at_step": steps_done, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                               "git_revision": git_revision()})
        atomic_write_text(self.path / META_FILE, json.dumps(meta, indent=2) + "\n")

    # --- checkpoints --------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:012d}"

    def mark_latest(self, ckpt: Path, keep: int) -> None:
        atomic_write_text(self.checkpoints / LATEST, ckpt.name + "\n")
        for old in self.complete_checkpoints()[:-keep]:
            if old != ckpt:
                shutil.rmtree(old, ignore_errors=True)

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints in step order; temp dirs of an interrupted write are never listed."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir() and (p / "state.json").is_file())

    def latest_checkpoint(self) -> Path | None:
        marker = self.checkpoints / LATEST
        if marker.is_file():
            named = self.checkpoints / marker.read_text().strip()
            if (named / "state.json").is_file():
                return named
        done = self.complete_checkpoints()
        return done[-1] if done else None

    def round_checkpoint(self, r: int) -> Path:
        """A behaviour-cloning run's checkpoint after round r (round 0: the first fit)."""
        return self.checkpoints / f"round_{r}"

    def completed_rounds(self, recorded: Callable[[int], Path | None]) -> list[tuple[Path, Path]]:
        """Per round whose checkpoint and data (`recorded(r)`, None if not written) both finished writing, in order
        without gaps from round 0: its checkpoint and data (a crash between atomic_dir's two renames may have left a
        round's previous version only)."""
        rounds: list[tuple[Path, Path]] = []
        while True:
            r = len(rounds)
            ckpt = recover_dir(self.round_checkpoint(r))
            data = recorded(r) if ckpt is not None and (ckpt / "state.json").is_file() else None
            if data is None:
                return rounds
            rounds.append((ckpt, data))

    def clean_temp(self) -> None:
        """Remove leftovers of writes a crash interrupted (they were never visible as snapshots)."""
        for parent in (self.path, self.checkpoints, self.path / DATA_DIR):
            if parent.is_dir():  # every temp_beside there (atomic_dir's, atomic_write_text's, data/'s save_demos)
                for p in parent.glob(TEMP_PREFIX + "*"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    # --- logs ---------------------------------------------------------------------------------
    def append_eval(self, record: dict[str, Any]) -> None:
        with open(self.path / EVAL_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def eval_history(self) -> list[dict[str, Any]]:
        path = self.path / EVAL_LOG
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line a crash cut short
                continue
        return out

    def keep_evals(self, keep) -> None:
        """Drop the evaluation records `keep(record)` rejects (a resumed run redoing work a crash cut short)."""
        kept = [r for r in self.eval_history() if keep(r)]
        atomic_write_text(self.path / EVAL_LOG, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

    def summary(self) -> dict[str, Any] | None:
        path = self.path / SUMMARY_FILE
        return json.loads(path.read_text()) if path.is_file() else None
