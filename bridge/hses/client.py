"""A blocking HSES client over UDP: one request, one matched reply, with a timeout and retries.

    with HsesClient("192.168.255.1") as robot:          # port 10040, 0.8 s per try, 2 retries
        robot.servo(True)
        robot.move_pulse(GP7_AXES.radians_to_pulses(q), MoveSpeed.joint_percent(20))
        while robot.read_status().running: ...

Each new command gets the next request ID (byte 11, wrapping at 256), as the manual asks; a retry
resends the same datagram with the same ID, so a late reply to the first try still counts. A reply
is accepted only from the socket's peer (a connected UDP socket), with this request's ID and service;
anything else is stale or malformed, counted in ``stats`` and never returned. A reply with a
non-zero status raises the typed error for its code (bridge.hses.errors). A linear incremental move
is never retried: if only its reply was lost, a second copy would move the tool twice.

Standard library and numpy only (controller side).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from typing import Sequence

import numpy as np

from bridge.hses.errors import HsesTimeout, HsesValueError, PacketError, status_error
from bridge.hses.packets import ROBOT_PORT, Command, Reply, Request, Service, decode_reply
from bridge.hses.payloads import (
    CYCLE_MODE_INSTANCE,
    OFF,
    ON,
    POSITION_CARTESIAN_R1,
    POSITION_PULSE_R1,
    Alarm,
    CartesianMotion,
    CycleMode,
    Frame,
    MoveCartesianData,
    MovePulseData,
    Position,
    PowerSwitch,
    PulseMotion,
    ResetKind,
    StatusBits,
    decode_io_read,
    decode_torque,
    encode_io_write,
    encode_u32,
)
from bridge.hses.units import HsesAxes, MoveSpeed, pose_from_wire, pose_to_wire

_RECV_BYTES = 65535  # read whole datagrams, so an oversize one is seen as such


class HsesClient:
    """One controller at ``host:port``. ``timeout`` is per try (real clients use 0.8-2 s); ``retries`` more tries follow.

    Thread-safe: one request is in flight at a time. Close it (or use ``with``) to release the socket.
    """

    def __init__(self, host: str, port: int = ROBOT_PORT, timeout: float = 0.8, retries: int = 2) -> None:
        if timeout <= 0 or retries < 0:
            raise HsesValueError(f"timeout {timeout} s must be positive and retries {retries} not negative")
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.stats: Counter[str] = Counter()  # sent, retries, stale, malformed, timeouts
        self._lock = threading.Lock()
        self._next_id = 0
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.connect((host.strip("[]"), port))  # the kernel then drops datagrams from anyone else
        except OSError:
            self._sock.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> HsesClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the exchange ---------------------------------------------------------------------------
    def request(self, command: int, instance: int, attribute: int, service: int, payload: bytes = b"",
                retries: int | None = None) -> Reply:
        """Send one request and return its successful reply; raises HsesStatusError (typed) or HsesTimeout."""
        with self._lock:
            request_id = self._next_id
            self._next_id = (self._next_id + 1) % 256
            data = Request(command, instance, attribute, service, request_id, payload).encode()
            tries = 1 + (self.retries if retries is None else retries)
            last_bad: PacketError | None = None
            for attempt in range(tries):
                if attempt:
                    self.stats["retries"] += 1
                try:
                    self._sock.send(data)
                except ConnectionRefusedError:  # an ICMP "port unreachable" from an earlier try, reported now
                    self._sock.send(data)
                self.stats["sent"] += 1
                reply, bad = self._await(request_id, service)
                last_bad = bad or last_bad
                if reply is not None:
                    if not reply.ok:
                        raise status_error(reply.status, reply.added_status, command)
                    return reply
            self.stats["timeouts"] += 1
            why = f"; last malformed reply: {last_bad}" if last_bad else ""
            raise HsesTimeout(f"no reply from {self.host}:{self.port} to command 0x{command:02X} (instance {instance}) "
                              f"in {tries} tries of {self.timeout:g} s{why}")

    def _await(self, request_id: int, service: int) -> tuple[Reply | None, PacketError | None]:
        """The matching reply within one try's timeout, or None; stale and malformed datagrams are skipped."""
        deadline = time.monotonic() + self.timeout
        bad = None
        while (remaining := deadline - time.monotonic()) > 0:
            self._sock.settimeout(remaining)
            try:
                raw = self._sock.recv(_RECV_BYTES)
            except socket.timeout:
                break
            except ConnectionRefusedError:  # ICMP port unreachable from an earlier send: nobody listens (yet)
                time.sleep(min(remaining, 0.01))
                continue
            try:
                reply = decode_reply(raw)
            except PacketError as exc:
                self.stats["malformed"] += 1
                bad = exc
                continue
            if reply.request_id != request_id or reply.service != service:
                self.stats["stale"] += 1
                continue
            return reply, bad
        return None, bad

    # --- reads ----------------------------------------------------------------------------------
    def read_status(self) -> StatusBits:
        """0x72: mode, cycle, running, hold, alarm, error and servo bits."""
        return StatusBits.decode(self.request(Command.READ_STATUS, 1, 0, Service.GET_ALL).payload)

    def read_position(self, kind: str = "pulse") -> Position:
        """0x75 for robot 1: ``kind`` "pulse" (axis pulses) or "cartesian" (um and 0.0001 deg in the base frame)."""
        instance = {"pulse": POSITION_PULSE_R1, "cartesian": POSITION_CARTESIAN_R1}.get(kind)
        if instance is None:
            raise HsesValueError(f"position kind {kind!r}: use 'pulse' or 'cartesian'")
        return Position.decode(self.request(Command.READ_POSITION, instance, 0, Service.GET_ALL).payload)

    def read_joints(self, axes: HsesAxes) -> np.ndarray:
        """Robot 1's joint angles in rad (pulses converted with ``axes``)."""
        return axes.pulses_to_radians(self.read_position("pulse").axes)

    def read_tool_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Robot 1's tool pose in its base frame: position (m) and Rx, Ry, Rz (rad)."""
        return pose_from_wire(self.read_position("cartesian").axes)

    def read_torque(self) -> tuple[int, ...]:
        """0x77 for robot 1: one signed word per axis (see docs/hses.md for the unit)."""
        return decode_torque(self.request(Command.READ_TORQUE, 1, 0, Service.GET_ALL).payload)

    def read_alarm(self, slot: int = 1) -> Alarm:
        """0x70: the active alarm in ``slot`` 1-4 (code 0: none)."""
        return Alarm.decode(self.request(Command.READ_ALARM, slot, 0, Service.GET_ALL).payload)

    def read_alarm_history(self, number: int) -> Alarm:
        """0x71: history entry ``number`` (1-100 major failure, 1001-1100 monitor, 2001-/3001- user, 4001- offline)."""
        return Alarm.decode(self.request(Command.READ_ALARM_HISTORY, number, 0, Service.GET_ALL).payload)

    def read_io(self, group: int) -> int:
        """0x78: the byte of I/O group ``group`` (8 signals; e.g. 1001 = universal outputs 10010-10017)."""
        return decode_io_read(self.request(Command.IO_DATA, group, 1, Service.GET_SINGLE).payload)

    # --- writes ---------------------------------------------------------------------------------
    def alarm_reset(self, kind: ResetKind = ResetKind.ALARM) -> None:
        """0x82: reset the alarms (instance 1) or cancel the errors (instance 2)."""
        self.request(Command.ALARM_RESET, int(kind), 1, Service.SET_SINGLE, encode_u32(1))

    def hold(self, on: bool) -> None:
        """0x83 instance 1: command hold on (stops a move) or off."""
        self._switch(PowerSwitch.HOLD, on)

    def servo(self, on: bool) -> None:
        """0x83 instance 2: servo power on or off."""
        self._switch(PowerSwitch.SERVO, on)

    def _switch(self, which: PowerSwitch, on: bool) -> None:
        self.request(Command.HOLD_SERVO, int(which), 1, Service.SET_SINGLE, encode_u32(ON if on else OFF))

    def write_io(self, group: int, value: int) -> None:
        """0x78: set the 8 signals of an output group (bit 0 = the group's first signal)."""
        self.request(Command.IO_DATA, group, 1, Service.SET_SINGLE, encode_io_write(value))

    def cycle_mode(self, mode: CycleMode) -> None:
        """0x84: step, one cycle or continuous."""
        self.request(Command.CYCLE_MODE, CYCLE_MODE_INSTANCE, 1, Service.SET_SINGLE, encode_u32(int(mode)))

    def move_cartesian(self, position_m: Sequence[float], rotation_rad: Sequence[float], speed: MoveSpeed,
                       motion: CartesianMotion = CartesianMotion.LINEAR_ABSOLUTE, frame: Frame = Frame.BASE,
                       tool: int = 0, user_frame: int = 0, form: int = 0) -> None:
        """0x8A: move robot 1's tool to (or, incremental, by) a pose: x, y, z in m, Rx, Ry, Rz in rad.

        The controller interpolates to the one point and replies at once; poll ``read_status().running``
        to see the move end. ``speed``: MoveSpeed.joint_percent for JOINT_ABSOLUTE, linear_mm_s or
        angular_deg_s for the linear motions.
        """
        speed_class, word = speed.wire()
        data = MoveCartesianData(speed_class, word, int(frame), pose_to_wire(position_m, rotation_rad), form=form,
                                 tool=tool, user_frame=user_frame)
        retries = 0 if motion == CartesianMotion.LINEAR_INCREMENTAL else None
        self.request(Command.MOVE_CARTESIAN, int(motion), 1, Service.SET_ALL, data.encode(), retries=retries)

    def move_pulse(self, pulses: Sequence[int], speed: MoveSpeed, motion: PulseMotion = PulseMotion.JOINT,
                   tool: int = 0) -> None:
        """0x8B: move robot 1 to axis positions in pulses (HsesAxes.radians_to_pulses makes them from rad)."""
        if not 1 <= len(pulses) <= 8:
            raise HsesValueError(f"{len(pulses)} pulse values: a robot has 1-8 axes")
        speed_class, word = speed.wire()
        data = MovePulseData(speed_class, word, tuple(int(p) for p in pulses), tool=tool)
        self.request(Command.MOVE_PULSE, int(motion), 1, Service.SET_ALL, data.encode())
