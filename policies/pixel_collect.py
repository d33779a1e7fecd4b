"""Record the expert's pixel episodes in worker processes while the student fits.

Expert-driven episodes do not depend on the student, so a pixel run with `bc.collect_workers` > 1
splits its first demonstrations among that many processes and records every expert-driven round
ahead, on the other cores (or the CPU, while a GPU trains). `record_pixels` seeds each episode by its
own index, so the data are the same episodes however they are split.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from policies.envs import make_env, make_expert
from policies.pixel_data import PixelData, record_pixels
from scenarios.randomization import Overlay

_worker: dict = {}  # in each worker process: its env and expert, built once


def _start_worker(scenario: str, robot: str | None, randomization: Overlay | None, observe_command: bool) -> None:
    env = make_env(scenario, robot, obs_mode="pixels", randomization=randomization, observe_command=observe_command)
    _worker.update(env=env, expert=make_expert(env))


def _record(seed: int, n_episodes: int, noise: float) -> PixelData:
    return record_pixels(_worker["env"], None, _worker["expert"], n_episodes, seed, noise)


class Recording:
    """Episodes being recorded in parts; `result()` waits and joins them in episode order."""

    def __init__(self, parts: list[Future]) -> None:
        self.parts = parts

    def result(self) -> PixelData:
        return PixelData.join([part.result() for part in self.parts])


class Collector:
    def __init__(self, scenario: str, robot: str | None, workers: int, randomization: Overlay | None = None,
                 observe_command: bool = False) -> None:
        # forkserver: workers inherit neither the parent's torch threads nor its Bullet client.
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_start_worker, initargs=(scenario, robot, randomization, observe_command))

    def record(self, n_episodes: int, seed: int, noise: float) -> Recording:
        """Expert episodes `seed .. seed + n_episodes - 1`, split among the workers."""
        bounds = np.linspace(0, n_episodes, min(self.workers, n_episodes) + 1).round().astype(int)
        return Recording([self.pool.submit(_record, seed + int(a), int(b - a), noise) for a, b in zip(bounds, bounds[1:])])

    def close(self) -> None:
        """Stop: recordings not started are dropped, running ones finish in their processes, which then exit."""
        self.pool.shutdown(wait=True, cancel_futures=True)
