"""Child processes that never outlive the command: `genba bridge serve` started, ready (its JSON ready line
read) and always stopped, and pools of worker processes stopped at once when the command is interrupted.

The demo, the latency bench and the tests each run a policy server beside a controller; this is
the one way they start and stop it, so none of them can leave a server running.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from genba.errors import AppError


class ServerStartError(AppError):
    """The server exited (or printed something else) before its ready line."""


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> int:
    """SIGTERM (a server says bye to its controllers and exits), then SIGKILL after grace_s; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)
    return proc.returncode


def die_with_parent() -> None:
    """For preexec_fn: the kernel sends the child SIGTERM when its parent dies, even by SIGKILL (Linux only)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextmanager
def worker_pool(workers: int, start_method: str = "spawn") -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process, even by SIGKILL, and are stopped at once when the block
    fails or is interrupted: the pool's own exit waits for every running task (minutes of a robustness row)."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                               initializer=die_with_parent if sys.platform.startswith("linux") else None)
    try:
        yield pool
    except BaseException:
        for proc in list((pool._processes or {}).values()):  # Python 3.11 has no public way (3.14: terminate_workers)
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a latency-critical child: one compute thread, unbuffered output, this checkout importable."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path, **extra}


class ServerProcess:
    """A running `genba bridge serve BUNDLE... ARGS` (loopback, any free port unless --bind is given)."""

    def __init__(self, bundles: Sequence[str | Path], *args: str, stderr: int | IO[Any] | None = subprocess.DEVNULL,
                 die_with_this_process: bool = False) -> None:
        argv = [str(b) for b in bundles] + list(args)
        if "--bind" not in argv:
            argv += ["--bind", "tcp://127.0.0.1:*"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genba", "bridge", "serve", *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr, text=True, env=child_env(),
            preexec_fn=die_with_parent if die_with_this_process and sys.platform.startswith("linux") else None,
        )
        line = self.proc.stdout.readline()
        try:
            self.ready: dict[str, Any] = json.loads(line)
            self.endpoint: str = self.ready["endpoint"]
        except (json.JSONDecodeError, KeyError):
            stop_process(self.proc)
            raise ServerStartError(f"`genba bridge serve` exited (code {self.proc.returncode}) before it was ready") from None

    def stop(self) -> int:
        return stop_process(self.proc)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
