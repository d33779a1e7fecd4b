"""The local side of `genba sweep`: K worker processes on this machine, watched until the study is done.

Each worker is `genba sweep --worker` in its own process (its log in workers/worker-I.log), exactly
what a cluster node runs. A worker that dies (killed, out of memory) has its running trials failed and
re-enqueued here at once (a database's heartbeat would do the same later; the journal has none), and
a replacement is started while trials remain. The study's progress is printed as one line per change.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from genba.server_process import die_with_parent
from policies.sweep import best_trial, counts, fail_trials_of
from policies.sweep_space import SweepError

POLL_S = 1.0
QUIET_S = 60.0  # the longest the coordinator stays silent
STOP_GRACE_S = 10.0


def worker_command(study: str, storage: str, heartbeat_s: float, sweep_dir: Path) -> list[str]:
    # --out: the trials go where the coordinator's sweep folder is now, which a moved folder's study no longer records
    return [sys.executable, "-m", "genba", "sweep", "--worker", "--study", study, "--storage", storage,
            "--heartbeat", str(heartbeat_s), "--out", str(sweep_dir.resolve())]


class LocalWorkers:
    def __init__(self, study, storage: str, heartbeat_s: float, sweep_dir: Path, k: int, echo: Callable[[str], None]):
        self.study, self.storage, self.heartbeat_s, self.sweep_dir, self.k, self.echo = study, storage, heartbeat_s, sweep_dir, k, echo
        self.log_dir = sweep_dir / "workers"
        self.procs: dict[int, subprocess.Popen] = {}  # slot -> process
        self.restarts = 0

    def start(self, slot: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"worker-{slot}.log", "ab") as log:
            # die_with_parent: a coordinator killed outright (SIGKILL, OOM) takes its workers along; a resume
            # would otherwise start K more beside them
            self.procs[slot] = subprocess.Popen(worker_command(self.study.study_name, self.storage, self.heartbeat_s, self.sweep_dir),
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)

    def run(self) -> None:
        """Start K workers and watch them (and the study) until every worker has exited."""
        n = int(self.study.user_attrs["trials"])
        t0, last, last_t = time.monotonic(), None, 0.0
        try:
            for slot in range(self.k):
                self.start(slot)
            while True:
                self._reap(n)
                line = progress_line(self.study, n)
                now = time.monotonic()
                if line != last or now - last_t >= QUIET_S:  # a trial can run for many minutes: say it still does
                    self.echo(f"[{now - t0:6.0f} s] {line}")
                    last, last_t = line, now
                if not self.procs and (self.k > 0 or self._finished(n)):
                    return
                time.sleep(POLL_S)
        finally:
            self.stop()

    def _finished(self, n: int) -> bool:
        c = counts(self.study)
        return c["complete"] + c["pruned"] >= n

    def _reap(self, n: int) -> None:
        for slot, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.procs[slot]
            if rc == 0:
                continue
            failed = fail_trials_of(self.study, proc.pid)
            self.echo(f"worker {slot} (pid {proc.pid}) exited with {rc}"
                      + (f"; trial(s) {', '.join(map(str, failed))} failed and queued again" if failed else "")
                      + f" (log: {self.log_dir / f'worker-{slot}.log'})")
            if self._finished(n):
                continue
            if self.restarts >= 2 * max(self.k, 1):
                raise SweepError(f"workers keep dying ({self.restarts} restarts); see the logs in {self.log_dir}")
            self.restarts += 1
            self.start(slot)

    def stop(self) -> None:
        """Terminate what still runs (an interrupted sweep), then kill what does not stop in time."""
        for proc in self.procs.values():
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def progress_line(study, n: int) -> str:
    c = counts(study)
    best = best_trial(study)
    line = (f"trials {c['complete'] + c['pruned']}/{n} finished ({c['pruned']} pruned) | {c['running']} running | "
            f"{c['waiting']} queued | {c['fail']} failed")
    if best is not None:
        cycle = best.user_attrs.get("cycle_time_s")
        line += f" | best #{best.number}: success {best.user_attrs.get('success', 0):.1%}" + (f", cycle {cycle:.2f} s" if cycle else "")
    return line
