"""An HSES controller emulator: a UDP server that answers Yaskawa's High-Speed Ethernet Server protocol
from a PyBullet cell (genba.hses.motion) and a controller state machine (genba.hses.controller).

    with HsesEmulator("conveyor-pick", port=0, speed=0) as emu:      # port 0: any free port
        with HsesClient(*emu.address) as robot: ...

One thread owns the socket, the controller and the cell: it answers datagrams between control
periods and steps the cell every period (``speed`` 1 = real time, 2 = twice as fast; 0 = as fast as
possible while a move runs, with the cell paused while the arm is idle, so an idle emulator costs
no CPU). Everything the thread owns is also reachable under ``emulator.lock``.

Datagrams that are not well-formed requests: from 32 bytes on (a header to answer) they get status
0x1F with the manual's format-error code (0xE4A6 identifier, 0xE4A5 header size, 0xE49E frame size
over, 0xE4A7 size mismatch, 0xE4A2 ACK, 0xE4A3 division, 0xE4A1 block number) and the request ID of
byte 11; shorter ones cannot be answered and are dropped. Both are counted in ``stats``; the server
keeps serving. A write command (service 0x02 or 0x10) that arrives again from the same address with
the same bytes within 2 s is a client's retry: it gets the first answer again and is not executed
twice. A client must change the request ID for a new command, as the manual asks.

Fault injection for tests: ``Faults(drop_rate=...)`` drops that fraction of replies (the command
still takes effect, as when a reply is lost on the wire); ``drop_next_replies(n)`` drops the next n;
``outage(seconds)`` ignores every datagram for a while; ``raise_alarm``, ``servo_off``, ``set_mode`` and
``set_remote`` play the pendant.
"""

from __future__ import annotations

import logging
import math
import random
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

from bridge.endpoints import is_loopback_host
from bridge.hses.errors import STATUS_ADDED, PacketError
from bridge.hses.packets import ROBOT_PORT, Service, decode_request, error_reply, salvage_request
from bridge.hses.payloads import Alarm
from bridge.hses.units import GP7_AXES, HsesAxes
from genba.errors import AppError
from genba.hses.controller import Controller, ControllerState
from genba.hses.motion import CellMotion

log = logging.getLogger("genba.hses")

IDLE_POLL_S = 0.05  # how long the thread waits for a datagram when nothing else is due
DUPLICATE_WINDOW_S = 2.0  # a repeated write within this is a retry, answered from the cache
_RECV_BYTES = 65535  # whole datagrams: an oversize one must be seen whole to be called oversize
_BURST = 64  # datagrams answered per wake-up before the cell is stepped again
MAX_CLIENTS_REMEMBERED = 256  # addresses whose last write is kept for retries


class EmulatorError(AppError):
    """The emulator cannot start as asked: a remote bind without --allow-remote, a robot it cannot emulate."""


@dataclass(frozen=True)
class Faults:
    """Injected faults: ``drop_rate`` of the replies are not sent (seeded by ``seed``)."""

    drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_rate <= 1.0:
            raise EmulatorError(f"drop rate {self.drop_rate}: use 0..1")


class HsesEmulator:
    """An emulated Yaskawa controller on ``host:port`` (UDP) driving a genba cell (GP7 only: HSES is Yaskawa's)."""

    def __init__(self, scenario: str = "conveyor-pick", robot: str = "gp7", host: str = "127.0.0.1",
                 port: int = ROBOT_PORT, speed: float = 1.0, faults: Faults = Faults(), allow_remote: bool = False,
                 axes: HsesAxes = GP7_AXES, state: ControllerState | None = None, seed: int = 0,
                 replace_moves: bool = False) -> None:
        if robot != "gp7":
            raise EmulatorError(f"robot {robot!r}: the HSES emulator drives Yaskawa's GP7 only (--robot gp7)")
        if not is_loopback_host(host) and not allow_remote:
            raise EmulatorError(f"bind {host}: the emulator listens on loopback only unless allowed "
                                "(--allow-remote); anyone who reaches it can move the simulated arm")
        if not (math.isfinite(speed) and speed >= 0):  # NaN ran as 0 and inf spun a core; neither is JSON in the ready line
            raise EmulatorError(f"speed {speed}: 1 = real time, 0 = as fast as possible, a finite number, never negative")
        self.speed, self.faults = speed, faults
        self.stats: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._rng = random.Random(faults.seed)
        self._outage_until = 0.0
        self._drop_next = 0
        self._recent: dict[tuple, tuple[bytes, bytes, float]] = {}  # address -> (request, reply, when)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_step = 0.0  # when the thread steps the cell next (monotonic s)
        self.motion = CellMotion(scenario, robot, seed)
        try:
            self.controller = Controller(self.motion, axes, state)
            self.controller.state.replace_moves = replace_moves or self.controller.state.replace_moves
            family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                self._sock.bind((host.strip("[]"), port))
            except OSError as exc:
                self._sock.close()
                raise EmulatorError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from None
        except BaseException:
            self.motion.close()
            raise
        self.address: tuple[str, int] = self._sock.getsockname()[:2]

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> HsesEmulator:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hses-emulator", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread, close the socket and the cell (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        if self._sock.fileno() >= 0:
            self._sock.close()
            self.motion.close()

    def __enter__(self) -> HsesEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- faults and the pendant ---------------------------------------------------------------
    def drop_next_replies(self, count: int) -> None:
        """Do not send the next ``count`` replies (their commands still take effect): a deterministic lost reply."""
        with self.lock:
            self._drop_next = count

    def outage(self, seconds: float) -> None:
        """Ignore every datagram for ``seconds`` (a cable pulled; the cell keeps running)."""
        with self.lock:
            self._outage_until = time.monotonic() + seconds

    def raise_alarm(self, code: int = 4107, name: str = "OUT OF RANGE (genba fault injection)") -> Alarm:
        """Raise an alarm: the arm stops and servo power drops until it is reset (0x82) and servo is on again."""
        with self.lock:
            return self.controller.raise_alarm(code, name)

    def servo_off(self) -> None:
        with self.lock:
            self.controller.servo_off()

    def set_mode(self, play: bool) -> None:
        """Turn the mode key: play (True) or teach; teach stops a move and drops servo power."""
        with self.lock:
            self.controller.state.play = play
            if not play:
                self.controller.servo_off()

    def set_remote(self, remote: bool) -> None:
        with self.lock:
            self.controller.state.remote = remote

    # --- the thread -----------------------------------------------------------------------------
    def realign(self) -> None:
        """Restart the step clock now (call under ``lock``): after an episode reset the first step comes a
        full control period later, as the env's first step follows its reset."""
        self._next_step = time.monotonic() + self.motion.period / (self.speed or 1.0)

    def _run(self) -> None:
        period = self.motion.period
        self._next_step = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.speed > 0:
                    wait = max(0.0, min(self._next_step - now, IDLE_POLL_S))
                else:
                    wait = 0.0 if self.motion.busy else IDLE_POLL_S
                readable, _, _ = select.select([self._sock], [], [], wait)
                if readable:
                    self._drain()
                with self.lock:
                    if self.speed > 0:
                        now = time.monotonic()
                        if now >= self._next_step:
                            self.motion.step()
                            self._next_step += period / self.speed
                            if now - self._next_step > 1.0:  # fell far behind (a stall): do not race to catch up
                                self.stats["overruns"] += 1
                                self._next_step = now
                    elif self.motion.busy:
                        self.motion.step()
        except Exception:  # the thread must not die silently: a test or the CLI sees it in the log and stats
            log.exception("HSES emulator thread failed")
            self.stats["crashed"] += 1
            raise

    def _drain(self) -> None:
        for _ in range(_BURST):
            try:
                data, address = self._sock.recvfrom(_RECV_BYTES, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error from an earlier reply: not this datagram's fault
                log.debug("recvfrom: %s", exc)
                return
            with self.lock:
                reply = self._answer(data, address)
            if reply is not None:
                self._send(reply, address)

    def _answer(self, data: bytes, address: tuple) -> bytes | None:
        """The reply bytes for one datagram, or None when there is none to send."""
        self.stats["datagrams"] += 1
        if time.monotonic() < self._outage_until:
            self.stats["outage_ignored"] += 1
            return None
        try:
            request = decode_request(data)
        except PacketError as exc:
            self.stats["malformed"] += 1
            salvaged = salvage_request(data)
            if salvaged is None or exc.added_status is None:
                self.stats["unanswerable"] += 1
                return None
            log.debug("malformed request from %s: %s", address, exc)
            return error_reply(salvaged, STATUS_ADDED, exc.added_status).encode()
        writes = request.service in (Service.SET_ALL, Service.SET_SINGLE)
        if writes:
            recent = self._recent.get(address)
            if recent and recent[0] == data and time.monotonic() - recent[2] < DUPLICATE_WINDOW_S:
                self.stats["retries_answered"] += 1
                return recent[1]
        reply = self.controller.handle(request).encode()
        if writes:
            if len(self._recent) >= MAX_CLIENTS_REMEMBERED:
                self._recent.clear()
            self._recent[address] = (data, reply, time.monotonic())
        return reply

    def _send(self, reply: bytes, address: tuple) -> None:
        with self.lock:
            dropped = self._drop_next > 0 or bool(self.faults.drop_rate and self._rng.random() < self.faults.drop_rate)
            self._drop_next = max(0, self._drop_next - 1)
        if dropped:
            self.stats["replies_dropped"] += 1
            return
        try:
            self._sock.sendto(reply, address)
            self.stats["replies"] += 1
        except OSError as exc:  # a peer that vanished must not stop the server
            self.stats["send_errors"] += 1
            log.debug("sendto %s: %s", address, exc)
