"""`genba bridge run --controller hses://...`: the policy server driving an HSES controller through the adapter.

Wires bridge.hses.adapter.HsesAdapter to its three peers (the controller over HSES, the cell PC, the
policy server), with the safety limits the twin uses (genba.twin.tool_limits), and reports the run as
the twin does: success with its Wilson 95% interval, mean cycle time, plus HSES round trips, held
periods and the stop reasons.
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bridge.client import BridgeClient, ClientConfig, HandshakeRejected
from bridge.hses.adapter import AdapterConfig, HsesAdapter
from bridge.hses.cell_link import CellLink
from bridge.hses.client import HsesClient
from bridge.hses.packets import ROBOT_PORT
from bridge.hses.units import GP7_AXES
from bridge.spec import spec_hash
from genba.errors import AppError
from genba.twin.tool_limits import tool_target_limits
from policies.evaluate import EVAL_SEED_OFFSET, wilson_interval


class HsesRunError(AppError):
    """A run that cannot start: a bad controller address, a cell the adapter cannot drive, no bundle for it."""


def parse_controller(url: str) -> tuple[str, int]:
    """hses://HOST[:PORT] -> (host, port); IPv6 in brackets."""
    if not url.startswith("hses://"):
        raise HsesRunError(f"--controller {url!r}: expected hses://HOST[:PORT], e.g. hses://127.0.0.1:10040")
    rest = url[len("hses://"):]
    if rest.startswith("["):
        host, closed, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
        if not closed or (tail and not tail.startswith(":")):  # 'hses://[::1' was taken as ::1
            host = ""
    else:
        host, _, port = rest.partition(":")
    if not host or "@" in host or (port and (not port.isdigit() or not 0 < int(port) < 65536)):
        raise HsesRunError(f"--controller {url!r}: expected hses://HOST[:PORT] with a port 1-65535")
    try:  # before connecting to the cell and the policy server, not a socket.gaierror traceback after them
        socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HsesRunError(f"--controller {url!r}: cannot resolve host {host!r} ({exc})") from None
    return host, int(port) if port else ROBOT_PORT


@dataclass
class HsesRunReport:
    controller: str
    bundle: str
    episodes_requested: int
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_cycle_time_s: float | None
    hses_rtt_ms: dict[str, float]
    policy_round_trip: dict[str, Any]
    held_periods: int
    lost_replies: int
    overruns: int
    stale_reads: int
    refused_moves: int
    policy_status: dict[str, int]
    safety_interventions: dict[str, int]
    episode_stops: list[dict[str, Any]]
    stop: dict[str, Any] | None
    hses_client: dict[str, int]
    wall_s: float
    episode_success: list[bool]
    episode_steps: list[int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success_ci95"] = list(self.success_ci95)
        return d

    def lines(self) -> list[str]:
        lo, hi = self.success_ci95
        ct = "n/a" if self.mean_cycle_time_s is None else f"{self.mean_cycle_time_s:.2f} s"
        rtt = self.hses_rtt_ms
        lines = [
            f"hses {self.controller} via bundle {self.bundle!r}: success {self.success_rate:.1%} [{lo:.1%}, {hi:.1%}] "
            f"over {self.episodes} episodes, cycle time {ct}",
            f"HSES round trip p50 {rtt['p50']:.3f} ms, p99 {rtt['p99']:.3f} ms over {rtt['count']} exchanges; "
            f"policy p50 {self.policy_round_trip.get('p50_us', float('nan')) / 1e3:.2f} ms",
            f"held periods {self.held_periods} (lost replies {self.lost_replies}); moves refused {self.refused_moves}; "
            f"late periods {self.overruns}; stale cell readings {self.stale_reads}; "
            f"policy statuses {self.policy_status}; safety {({k: v for k, v in self.safety_interventions.items() if v}) or 'none'}",
        ]
        for stop in self.episode_stops:
            lines.append(f"episode {stop['episode']} stopped at step {stop['step']}: {stop['reason']}"
                         + (f" (added status {stop['added_status']})" if stop["added_status"] else ""))
        if self.stop is not None:
            lines.append(f"run stopped: {self.stop['reason']}"
                         + (f" (added status {self.stop['added_status']})" if self.stop["added_status"] else ""))
        return lines


def run_hses(controller: str, cell: str, connect: str, episodes: int, seed: int = 0, bundle: str | None = None,
             config: AdapterConfig | None = None, log=print) -> HsesRunReport:
    host, port = parse_controller(controller)
    config = config or AdapterConfig()
    with ExitStack() as stack:
        link = stack.enter_context(CellLink(cell))
        spec = link.describe()
        if spec["action"]["kind"] != "ee_delta" or spec["robot"]["model"] != "gp7":
            raise HsesRunError(f"the HSES adapter drives ee_delta cells with a GP7; this cell has "
                               f"{spec['action']['kind']!r} actions and a {spec['robot']['model']!r}")
        control_hz = float(spec["control_hz"])
        client = BridgeClient(ClientConfig(
            connect, bundle, spec_hash(spec["observation"], spec["action"], control_hz),
            robot={"model": spec["robot"]["model"], "joint_names": spec["robot"]["joint_names"]},
            name=f"hses-{spec['scenario']['name']}"))
        stack.callback(client.close)
        try:
            welcome = client.connect(10.0)
        except HandshakeRejected as exc:
            raise HsesRunError(f"{connect} serves no bundle for {spec['scenario']['name']} with the GP7: {exc}") from None
        robot = stack.enter_context(HsesClient(host, port, timeout=config.hses_timeout_s, retries=0))
        yaw_scale = next(f["scale"] for f in spec["action"]["features"] if f["name"] == "tool_delta_yaw")
        limits = tool_target_limits(spec["robot"], float(yaw_scale) * control_hz, control_hz)
        adapter = HsesAdapter(robot, link, client, spec, limits, GP7_AXES, config, log)
        started = time.monotonic()
        seeds = [EVAL_SEED_OFFSET + seed + i for i in range(episodes)]
        results, stop = adapter.run(episodes, seeds)
        wall = time.monotonic() - started
        stats = adapter.stats
        summary = stats.hses_rtt.summary()
        n = len(results)
        successes = sum(r.success for r in results)
        cycle_times = [r.cycle_time_s for r in results if r.success and r.cycle_time_s is not None]
        return HsesRunReport(
            controller=controller, bundle=welcome.bundle, episodes_requested=episodes, episodes=n, successes=successes,
            success_rate=successes / n if n else 0.0, success_ci95=wilson_interval(successes, n),
            mean_cycle_time_s=float(np.mean(cycle_times)) if cycle_times else None,
            hses_rtt_ms={"p50": summary["p50_us"] / 1e3, "p99": summary["p99_us"] / 1e3,
                         "max": summary["max_us"] / 1e3, "count": int(summary["count"])},
            policy_round_trip=client.stats.summary(), held_periods=stats.held_periods, lost_replies=stats.lost_replies,
            overruns=stats.overruns, stale_reads=stats.stale_reads, refused_moves=stats.refused_moves, policy_status=stats.policy_status,
            safety_interventions=stats.safety,
            episode_stops=[r.stop.to_dict() for r in results if r.stop is not None],
            stop=stop.to_dict() if stop is not None else None, hses_client=dict(robot.stats), wall_s=wall,
            episode_success=[r.success for r in results], episode_steps=[r.env_steps for r in results],
        )
