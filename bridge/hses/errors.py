"""HSES errors: malformed datagrams, timeouts, and the controller's status codes as typed exceptions.

A reply's status byte (offset 25) is 0x00 when the command worked, 0x1F when an added status code
(offsets 28-29) says why not, and a few other values that stand alone. The codes, names and meanings
below are Yaskawa's: the FS100 HSES manual (160766-1CD, "added status" table) as it is reproduced in
Yaskawa's own Wireshark dissector (github.com/Yaskawa-Global/HSES_Dissector, wiresharklib/hses_header.lua)
and in the public moto-hses docs (docs/specs/hses-protocol.md). Only the codes genba produces or
handles get a class; `status_error` turns any other code into a plain `HsesStatusError`.
"""

from __future__ import annotations

from bridge.errors import BridgeError


class HsesError(BridgeError):
    """Base of every HSES error (a BridgeError, so the app prints it as one line)."""


class HsesTimeout(HsesError):
    """No matching reply within the timeout, after every retry."""


class HsesValueError(HsesError, ValueError):
    """A value that cannot go on the wire (outside int32, a negative speed, a wrong axis count)."""


# --- malformed datagrams -------------------------------------------------------------------------


class PacketError(HsesError):
    """A datagram that is not a well-formed HSES packet: says which field, at which byte offset.

    ``added_status`` is the format-error code a controller answers such a request with (added status
    table, E4xx rows), where it can answer at all; None where it cannot (no header to answer).
    """

    added_status: int | None = None

    def __init__(self, field: str, offset: int, detail: str) -> None:
        super().__init__(f"HSES packet: {field} at byte {offset}: {detail}")
        self.field, self.offset, self.detail = field, offset, detail


class TruncatedPacket(PacketError):
    """Fewer bytes than the 32-byte header, or than the header's data size promises."""

    added_status = 0xE4A7  # "the size of the requested command and received frame are different"


class OversizePacket(PacketError):
    """A data size above 479 bytes, or a datagram longer than header + data size."""

    added_status = 0xE49E  # "frame size over"


class BadIdentifier(PacketError):
    """Bytes 0-3 are not 'YERC'."""

    added_status = 0xE4A6


class BadHeaderSize(PacketError):
    """Bytes 4-5 are not 0x20."""

    added_status = 0xE4A5


class BadAck(PacketError):
    """Byte 10 says reply where a request was expected, or the other way round."""

    added_status = 0xE4A2


class BadDivision(PacketError):
    """Byte 9 is not a division this side serves (1 robot command; 2 file commands are not implemented)."""

    added_status = 0xE4A3


class BadBlockNumber(PacketError):
    """Bytes 12-15 of a robot-command request are not 0."""

    added_status = 0xE4A1


class BadPayload(PacketError):
    """A reply's data part does not have the layout its command defines (the client's check)."""


# --- the controller's status codes -------------------------------------------------------------

STATUS_OK = 0x00
STATUS_ADDED = 0x1F  # "abnormal reply": the added status code says why

# Status byte values that stand alone (added status size 0), from the manual's status table.
STATUS_CODES: dict[int, tuple[str, str]] = {
    0x08: ("COMMAND_NOT_DEFINED", "Requested command is not defined (genba: service not supported by this command)"),
    0x09: ("INVALID_ELEMENT", "The element number of the invalid data is detected"),
    0x28: ("NO_INSTANCE", "An instance of the requested data does not exist in the specified command"),
}

# Added status code -> (name, meaning). The meanings are the manual's wording.
ADDED_STATUS: dict[int, tuple[str, str]] = {
    0x1010: ("COMMAND_ERROR", "Command error"),
    0x1011: ("OPERAND_COUNT", "Error in number of command operands"),
    0x1012: ("OPERAND_RANGE", "Command operand value range over"),
    0x1013: ("OPERAND_LENGTH", "Command operand length error"),
    0x2010: ("MANIPULATOR_OPERATING", "Manipulator operating"),
    0x2020: ("HOLD_PENDANT", "Hold by programming pendant"),
    0x2030: ("HOLD_PANEL", "Hold by playback panel"),
    0x2040: ("HOLD_EXTERNAL", "External hold"),
    0x2050: ("HOLD_COMMAND", "Command hold"),
    0x2060: ("ALARM_OCCURRING", "Error/alarm occurring"),
    0x2070: ("SERVO_OFF", "Servo OFF"),
    0x2080: ("INCORRECT_MODE", "Incorrect mode"),
    0x2100: ("REMOTE_NOT_SET", "Command remote not set"),
    0x3010: ("TURN_ON_SERVO", "Turn ON the servo power"),
    0x3450: ("SERVO_CANNOT_TURN_ON", "Servo power cannot be turned ON"),
    0xA000: ("UNDEFINED_COMMAND", "Undefined command"),
    0xA001: ("INSTANCE_ERROR", "Instance error"),
    0xA002: ("ATTRIBUTE_ERROR", "Attribute error"),
    0xB003: ("DATA_SIZE", "Requiring data size error"),
    0xB004: ("DATA_RANGE", "Out of range the data"),
    0xB008: ("CONTROL_GROUP", "Control group setting error"),
    0xB009: ("SPEED_SETTING", "Speed setting error"),
    0xB00A: ("SPEED_NOT_SET", "Operating speed is not setting"),
    0xB00B: ("COORDINATE_SYSTEM", "Operation coordinate system setting error"),
    0xB00C: ("TYPE_SETTING", "Type setting error"),
    0xB00D: ("TOOL_NUMBER", "Tool No. setting error"),
    0xB00E: ("USER_NUMBER", "User No. setting error"),
    0xCFFF: ("OTHER_ERROR", "Other error"),
    0xE49E: ("FRAME_SIZE_OVER", "Format error (frame size over)"),
    0xE4A1: ("BLOCK_NUMBER", "Format error (block number error)"),
    0xE4A2: ("ACK_ERROR", "Format error (ACK error)"),
    0xE4A3: ("DIVISION_ERROR", "Format error (processing category error)"),
    0xE4A5: ("HEADER_SIZE", "Format error (header size error)"),
    0xE4A6: ("IDENTIFIER", "Format error (identifier error)"),
    0xE4A7: ("FRAME_SIZE_MISMATCH", "Format error (the size of the requested command and received frame are different)"),
}


class HsesStatusError(HsesError):
    """The controller answered with a non-zero status: ``status`` (byte 25) and ``added_status`` (bytes 28-29)."""

    code: int | None = None  # the added status a subclass stands for

    def __init__(self, status: int, added_status: int, command: int | None = None) -> None:
        name, meaning = describe(status, added_status)
        where = f"command 0x{command:02X}: " if command is not None else ""
        super().__init__(f"{where}controller status 0x{status:02X}, added status 0x{added_status:04X} {name}: {meaning}")
        self.status, self.added_status, self.command = status, added_status, command
        self.name, self.meaning = name, meaning


def describe(status: int, added_status: int) -> tuple[str, str]:
    """(name, meaning) of a reply's status pair, from the tables above."""
    if status == STATUS_ADDED:
        return ADDED_STATUS.get(added_status, ("UNKNOWN", "added status not in genba's table (see the HSES manual)"))
    return STATUS_CODES.get(status, ("UNKNOWN", "status not in genba's table (see the HSES manual)"))


class CommandNotDefined(HsesStatusError):
    """Status 0x08: the command does not offer the requested service."""


class ManipulatorOperating(HsesStatusError):
    code = 0x2010


class CommandHold(HsesStatusError):
    code = 0x2050


class AlarmOccurring(HsesStatusError):
    code = 0x2060


class ServoOff(HsesStatusError):
    code = 0x2070


class IncorrectMode(HsesStatusError):
    code = 0x2080


class RemoteNotSet(HsesStatusError):
    code = 0x2100


class ServoCannotTurnOn(HsesStatusError):
    code = 0x3450


class UndefinedCommand(HsesStatusError):
    code = 0xA000


class InstanceOutOfRange(HsesStatusError):
    code = 0xA001


class AttributeOutOfRange(HsesStatusError):
    code = 0xA002


class DataSizeError(HsesStatusError):
    code = 0xB003


class DataRangeError(HsesStatusError):
    code = 0xB004


class ControlGroupError(HsesStatusError):
    code = 0xB008


class SpeedSettingError(HsesStatusError):
    code = 0xB009


class CoordinateSystemError(HsesStatusError):
    code = 0xB00B


class ToolNumberError(HsesStatusError):
    code = 0xB00D


class UserNumberError(HsesStatusError):
    code = 0xB00E


class FormatError(HsesStatusError):
    """One of the E4xx format errors: the controller could not parse the request datagram."""


_BY_CODE: dict[int, type[HsesStatusError]] = {
    cls.code: cls for cls in HsesStatusError.__subclasses__() if cls.code is not None
}


def status_error(status: int, added_status: int, command: int | None = None) -> HsesStatusError:
    """The typed exception for a reply's (status, added status)."""
    if status == STATUS_ADDED:
        if added_status in _BY_CODE:
            return _BY_CODE[added_status](status, added_status, command)
        if 0xE49D <= added_status <= 0xE4A9:
            return FormatError(status, added_status, command)
    elif status == 0x08:
        return CommandNotDefined(status, added_status, command)
    return HsesStatusError(status, added_status, command)
