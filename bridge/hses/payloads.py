"""The data parts of the commands genba speaks, as typed dataclasses with their exact byte layouts.

All words are 32-bit little-endian. Sources, per layout:
- status (0x72), the Data 1 / Data 2 bits: Yaskawa's Wireshark dissector (Yaskawa-Global/HSES_Dissector,
  wiresharklib/hses_baseCommands.lua, "Status (72)"); fs100.py and moto-hses agree bit for bit.
- position (0x75): data type, form, tool, user frame, extended form, then axis 1-8 (the dissector's
  attributes 1-13; pulse, or X/Y/Z in micrometres and Rx/Ry/Rz in 0.0001 deg, per its multipliers).
- torque (0x77): axis 1-8, one signed word each (dissector, "Torque (77)").
- alarm (0x70/0x71): code, data, type, 16 bytes of time, 32 bytes of name: 60 bytes (dissector,
  "Alarm Data (70)"; the 0x30A/0x30B variants with sub-code strings are not implemented).
- I/O data (0x78): instance = the I/O group number (8 signals), attribute 1, one byte of data, bit 0
  the group's first signal; the group ranges are moto-hses's (docs/specs/hses-protocol.md, io.rs), the
  write padded to 4 bytes as moto-hses sends it.
- move (0x8A, 0x8B): the field order of the manual's move instruction commands, as fs100.py
  (hsinkoyu/fs100: mov, pmov) and a Delphi client (TPositionData) both lay them out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from bridge.hses.errors import BadPayload

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class SpeedClass(IntEnum):
    """Speed classification of a move and the unit of its speed word."""

    PERCENT = 0  # joint moves: 0.01 % of each axis's maximum speed
    LINEAR = 1  # tool speed along the path: 0.1 mm/s
    ANGULAR = 2  # tool rotation speed: 0.1 deg/s


class Frame(IntEnum):
    """Coordinate frame of a Cartesian position (the data type word; 0 means pulses)."""

    PULSE = 0
    BASE = 16
    ROBOT = 17
    USER = 18
    TOOL = 19


class CartesianMotion(IntEnum):
    """Instance of 0x8A: how the tool gets to the target."""

    JOINT_ABSOLUTE = 1  # joint interpolation (MOVJ) to an absolute pose
    LINEAR_ABSOLUTE = 2  # straight line (MOVL) to an absolute pose
    LINEAR_INCREMENTAL = 3  # straight line by a delta from where the tool is


class PulseMotion(IntEnum):
    """Instance of 0x8B."""

    JOINT = 1
    LINEAR = 2


class PowerSwitch(IntEnum):
    """Instance of 0x83."""

    HOLD = 1
    SERVO = 2
    HLOCK = 3


ON, OFF = 1, 2  # the data word of 0x83


class CycleMode(IntEnum):
    """Data word of 0x84 (instance 2)."""

    STEP = 1
    ONE_CYCLE = 2
    CONTINUOUS = 3


class ResetKind(IntEnum):
    """Instance of 0x82."""

    ALARM = 1  # reset alarms
    ERROR = 2  # cancel errors


CYCLE_MODE_INSTANCE = 2
POSITION_PULSE_R1 = 1  # instance of 0x75: robot 1 in pulses ...
POSITION_CARTESIAN_R1 = 101  # ... and in Cartesian coordinates
N_AXES = 8  # axis words in position and torque data


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise BadPayload(what, 32, f"{len(payload)} bytes, expected one 32-bit word (4)")
    return _U32.unpack(payload)[0]


def _words(payload: bytes, what: str, fmt: str) -> tuple[int, ...]:
    layout = struct.Struct("<" + fmt)
    if len(payload) != layout.size:
        raise BadPayload(what, 32, f"{len(payload)} bytes, expected {layout.size}")
    return layout.unpack(payload)


# --- 0x72 status ---------------------------------------------------------------------------------

_DATA1 = ("step", "one_cycle", "continuous", "running", "in_guard_safe_operation", "teach", "play", "command_remote")
_DATA2 = (None, "hold_pendant", "hold_external", "hold_command", "alarm", "error", "servo_on")


@dataclass(frozen=True)
class StatusBits:
    """The two status words of 0x72: Data 1 bits 0-7 and Data 2 bits 1-6 (bit 0 of Data 2 unused)."""

    step: bool = False
    one_cycle: bool = False
    continuous: bool = False  # "auto" / continuous cycle
    running: bool = False
    in_guard_safe_operation: bool = False
    teach: bool = False
    play: bool = False
    command_remote: bool = False
    hold_pendant: bool = False
    hold_external: bool = False
    hold_command: bool = False
    alarm: bool = False
    error: bool = False
    servo_on: bool = False

    def words(self) -> tuple[int, int]:
        data1 = sum(1 << bit for bit, name in enumerate(_DATA1) if getattr(self, name))
        data2 = sum(1 << bit for bit, name in enumerate(_DATA2) if name and getattr(self, name))
        return data1, data2

    def fields(self) -> list[bytes]:
        return [_U32.pack(w) for w in self.words()]

    def encode(self) -> bytes:
        return b"".join(self.fields())

    @classmethod
    def from_words(cls, data1: int, data2: int) -> StatusBits:
        values = {name: bool(data1 >> bit & 1) for bit, name in enumerate(_DATA1)}
        values.update({name: bool(data2 >> bit & 1) for bit, name in enumerate(_DATA2) if name})
        return cls(**values)

    @classmethod
    def decode(cls, payload: bytes) -> StatusBits:
        return cls.from_words(*_words(payload, "status data", "II"))


# --- 0x75 position ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """A robot position: pulses (frame PULSE) or X/Y/Z in um and Rx/Ry/Rz in 0.0001 deg (the first six axes)."""

    frame: int
    axes: tuple[int, ...]  # up to 8 signed words
    form: int = 0  # posture bits (front/back, upper/lower elbow, flip, ...)
    tool: int = 0
    user_frame: int = 0
    extended_form: int = 0

    def fields(self) -> list[bytes]:
        axes = list(self.axes) + [0] * (N_AXES - len(self.axes))
        head = [_U32.pack(v) for v in (self.frame, self.form, self.tool, self.user_frame, self.extended_form)]
        return head + [_I32.pack(v) for v in axes]

    def encode(self) -> bytes:
        return b"".join(self.fields())

    @classmethod
    def decode(cls, payload: bytes) -> Position:
        n = (len(payload) - 20) // 4
        if len(payload) % 4 or not 1 <= n <= N_AXES:
            raise BadPayload("position data", 32, f"{len(payload)} bytes, expected 20 + 4 per axis (24-52)")
        frame, form, tool, user, ext, *axes = struct.unpack(f"<5I{n}i", payload)
        return cls(frame, tuple(axes), form, tool, user, ext)


# --- 0x77 torque -----------------------------------------------------------------------------------


def encode_torque(values: tuple[int, ...]) -> bytes:
    return b"".join(_I32.pack(v) for v in values)


def decode_torque(payload: bytes) -> tuple[int, ...]:
    if len(payload) % 4 or not 4 <= len(payload) <= 4 * N_AXES:
        raise BadPayload("torque data", 32, f"{len(payload)} bytes, expected 4 per axis (4-32)")
    return struct.unpack(f"<{len(payload) // 4}i", payload)


# --- 0x70 / 0x71 alarm -----------------------------------------------------------------------------

ALARM_SIZE = 60


@dataclass(frozen=True)
class Alarm:
    """One alarm record; code 0 means no alarm in that slot. Time reads 'YYYY/MM/DD HH:MM'."""

    code: int = 0
    data: int = 0  # the alarm's sub code
    type: int = 0
    time: str = ""
    name: str = ""

    def fields(self) -> list[bytes]:
        # Real controllers use the pendant's character set (e.g. Shift-JIS); genba writes UTF-8.
        return [_U32.pack(self.code), _U32.pack(self.data), _U32.pack(self.type),
                _text(self.time, 16), _text(self.name, 32)]

    def encode(self) -> bytes:
        return b"".join(self.fields())

    @classmethod
    def decode(cls, payload: bytes) -> Alarm:
        if len(payload) != ALARM_SIZE:
            raise BadPayload("alarm data", 32, f"{len(payload)} bytes, expected {ALARM_SIZE}")
        code, data, kind = struct.unpack_from("<3I", payload)
        return cls(code, data, kind, _untext(payload[12:28]), _untext(payload[28:60]))


def _text(text: str, size: int) -> bytes:
    raw = text.encode("utf-8")[:size]
    return raw + b"\0" * (size - len(raw))


def _untext(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


# --- 0x8A / 0x8B moves -----------------------------------------------------------------------------

_MOVE_CARTESIAN = struct.Struct("<5I6i2i4I3i6i")  # 26 words, 104 bytes
_MOVE_PULSE = struct.Struct("<4I8iI3i6i")  # 22 words, 88 bytes
MOVE_CARTESIAN_SIZE, MOVE_PULSE_SIZE = _MOVE_CARTESIAN.size, _MOVE_PULSE.size


@dataclass(frozen=True)
class MoveCartesianData:
    """Data part of 0x8A: control groups, speed, frame, the pose, posture, tool, user frame, base and station axes."""

    speed_class: int
    speed: int  # in the speed class's unit (0.01 %, 0.1 mm/s or 0.1 deg/s)
    frame: int
    pose: tuple[int, int, int, int, int, int]  # X, Y, Z (um), Rx, Ry, Rz (0.0001 deg)
    robot_group: int = 1
    station_group: int = 0
    form: int = 0
    extended_form: int = 0
    tool: int = 0
    user_frame: int = 0
    base_axes: tuple[int, int, int] = (0, 0, 0)
    station_axes: tuple[int, ...] = field(default=(0,) * 6)

    def encode(self) -> bytes:
        return _MOVE_CARTESIAN.pack(self.robot_group, self.station_group, self.speed_class, self.speed, self.frame,
                                    *self.pose, 0, 0, self.form, self.extended_form, self.tool, self.user_frame,
                                    *self.base_axes, *self.station_axes)

    @classmethod
    def decode(cls, payload: bytes) -> MoveCartesianData:
        w = _words(payload, "move (Cartesian) data", _MOVE_CARTESIAN.format[1:])
        return cls(w[2], w[3], w[4], tuple(w[5:11]), w[0], w[1], w[13], w[14], w[15], w[16], tuple(w[17:20]),
                   tuple(w[20:26]))


@dataclass(frozen=True)
class MovePulseData:
    """Data part of 0x8B: control groups, speed, robot axis 1-8 in pulses, tool, base and station axes."""

    speed_class: int
    speed: int
    pulses: tuple[int, ...]  # up to 8; missing axes are 0
    robot_group: int = 1
    station_group: int = 0
    tool: int = 0
    base_axes: tuple[int, int, int] = (0, 0, 0)
    station_axes: tuple[int, ...] = field(default=(0,) * 6)

    def encode(self) -> bytes:
        pulses = list(self.pulses) + [0] * (N_AXES - len(self.pulses))
        return _MOVE_PULSE.pack(self.robot_group, self.station_group, self.speed_class, self.speed, *pulses, self.tool,
                                *self.base_axes, *self.station_axes)

    @classmethod
    def decode(cls, payload: bytes) -> MovePulseData:
        w = _words(payload, "move (pulse) data", _MOVE_PULSE.format[1:])
        return cls(w[2], w[3], tuple(w[4:12]), w[0], w[1], w[12], tuple(w[13:16]), tuple(w[16:22]))


# --- 0x78 I/O data ---------------------------------------------------------------------------------

# I/O groups by instance (8 signals a group; the pendant's logical signal number is the group's number
# times 10 plus the bit, e.g. group 1001 holds universal outputs 10010-10017, OT#1-8).
IO_GROUPS = {
    "robot user input": (1, 512), "robot user output": (1001, 1512), "external input": (2001, 2128),
    "network input": (2701, 2956), "external output": (3001, 3128), "network output": (3701, 3956),
    "robot system input": (4001, 4256), "robot system output": (5001, 5512), "interface panel input": (6001, 6064),
    "auxiliary relay": (7001, 7999), "robot control status signal": (8001, 8512), "pseudo input": (8701, 8720),
}
WRITABLE_IO = ("robot user output", "network input")  # what HSES may write; the rest is the controller's own
IO_WRITE_SIZE = 4  # one data byte, padded to a word


def io_group_kind(group: int) -> str | None:
    """The kind of an I/O group number (instance of 0x78), None when it is no group."""
    return next((kind for kind, (lo, hi) in IO_GROUPS.items() if lo <= group <= hi), None)


def encode_io_write(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise BadPayload("I/O data", 32, f"{value}: one byte, 0-255")
    return bytes([value, 0, 0, 0])


def decode_io_write(payload: bytes) -> int:
    """The byte of a 0x78 write: 1 byte (the manual's size) or 4 (padded, as moto-hses sends it)."""
    if len(payload) not in (1, IO_WRITE_SIZE) or any(payload[1:]):
        raise BadPayload("I/O data", 32, f"{len(payload)} bytes {payload.hex()}: one byte, optionally padded with "
                                         "3 zero bytes")
    return payload[0]


def decode_io_read(payload: bytes) -> int:
    if len(payload) not in (1, IO_WRITE_SIZE):
        raise BadPayload("I/O data", 32, f"{len(payload)} bytes, expected 1 (or 4, padded)")
    return payload[0]
