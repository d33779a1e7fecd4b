"""What a twin run is asked to do: the cell, the server, pacing, faults to inject, the live page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bridge.keys import ClientKeys
from genba.errors import AppError


class TwinError(AppError):
    """A twin that cannot run: a cell the twin cannot drive, a bundle for another cell, a bad option."""


@dataclass
class Faults:
    latency_ms: float = 0.0  # added before each request is sent
    jitter_ms: float = 0.0  # plus uniform [0, jitter_ms)
    drop_rate: float = 0.0  # fraction of replies thrown away as if lost (long-run)
    seed: int = 0
    random_delay_ms: float = 0.0  # plus exponential random delay with this mean
    loss_burst: float = 1.0  # mean length of a run of lost replies (1: independent losses)

    def __post_init__(self) -> None:
        times = (self.latency_ms, self.jitter_ms, self.random_delay_ms)
        if not all(math.isfinite(t) and t >= 0 for t in times) or not 0.0 <= self.drop_rate <= 1.0 \
                or not 1.0 <= self.loss_burst < math.inf:  # NaN fails every comparison: it slipped past min() < 0
            raise TwinError(f"faults must be finite and non-negative, drop rate in [0, 1] and loss burst >= 1, got {self}")


@dataclass
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port
    fps: float = 10.0


@dataclass
class TwinConfig:
    scenario: str
    endpoint: str
    bundle: str | None = None  # served bundle name; None: the server picks the one whose spec hash matches the cell's
    episodes: int = 20
    seed: int = 0
    servo_hz: float = 250.0
    speed: float = 1.0  # 1 = real time, 2 = twice as fast, 0 = as fast as possible
    latency_budget: float = 0.5  # fraction of the control period a reply may take
    reduced_speed: bool = False
    max_tool_accel: float | None = None  # m/s^2 on the tool target; None: see tool_target_limits
    robot: str | None = None
    obs_mode: str = "state"  # perceived: the twin renders its camera and runs perception itself, as a cell PC would
    observe_command: bool = False  # the observation ends with the commanded tool target (a bundle trained so)
    image_encodings: tuple[str, ...] = ()  # pixels: camera frame encodings offered at hello, preferred first (none: raw)
    faults: Faults = field(default_factory=Faults)
    randomization: dict | str | None = None  # domain randomisation overlay or profile (sim.FactoryEnv's)
    play: bool = False  # the scenario's domain randomisation off (sim.FactoryEnv's play switch)
    chunks: bool | None = None  # execute chunks from a queue (bridge.executor); None: when the bundle gives chunks
    replan_after: int | None = None  # chunk executor: re-observe after this many actions (None: half the chunk)
    blend: int = 0  # chunk executor: periods crossfaded at a chunk boundary
    max_age_ms: float | None = None  # chunk executor: stale limit (None: the chunk's horizon)
    keys: ClientKeys | None = None
    web: WebOptions | None = None  # serve the live page (needs the viewer's aiohttp)
