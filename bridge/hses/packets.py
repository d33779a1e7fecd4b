"""HSES datagrams: the 32-byte header and its request / reply sub-headers, encoded and checked.

Layout (little-endian), from the FS100 HSES manual (160766-1CD, "header part") as Yaskawa's own
Wireshark dissector reads it (Yaskawa-Global/HSES_Dissector, wiresharklib/hses_header.lua):

    0-3   identifier "YERC"        4-5  header size 0x20        6-7   data size (bytes after the header)
    8     reserve, 3               9    division (1 robot command, 2 file)
    10    ACK (0 request, 1 reply) 11   request ID              12-15 block number
    16-23 reserve "99999999"
    request: 24-25 command  26-27 instance  28 attribute  29 service  30-31 padding
    reply:   24 service + 0x80  25 status  26 added status size  27 padding  28-29 added status  30-31 padding

The data part holds at most 479 bytes (0x1DF). A request's block number is 0; a single-packet reply's
is 0x8000_0000 (the "last block" flag). Byte 8 is 3 in every public client (fs100, moto-hses) and in
the manual's examples; neither it nor the "99999999" reserve is checked on decode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from bridge.hses.errors import (
    BadAck,
    BadBlockNumber,
    BadDivision,
    BadHeaderSize,
    BadIdentifier,
    OversizePacket,
    PacketError,
    TruncatedPacket,
)

ROBOT_PORT = 10040  # robot commands
FILE_PORT = 10041  # file commands (not implemented here)
IDENTIFIER = b"YERC"
HEADER_SIZE = 0x20
MAX_DATA_SIZE = 479
MAX_DATAGRAM = HEADER_SIZE + MAX_DATA_SIZE
RESERVE_BYTE = 3
RESERVE = b"99999999"
DIVISION_ROBOT = 1
DIVISION_FILE = 2
ACK_REQUEST = 0
ACK_REPLY = 1
LAST_BLOCK = 0x8000_0000

_COMMON = struct.Struct("<4sHHBBBBI8s")  # bytes 0-23
_REQUEST_SUB = struct.Struct("<HHBBH")  # bytes 24-31 of a request
_REPLY_SUB = struct.Struct("<BBBBHH")  # bytes 24-31 of a reply


class Command(IntEnum):
    """The robot commands genba speaks (division 1)."""

    READ_ALARM = 0x70
    READ_ALARM_HISTORY = 0x71
    READ_STATUS = 0x72
    READ_POSITION = 0x75
    READ_TORQUE = 0x77
    IO_DATA = 0x78
    ALARM_RESET = 0x82
    HOLD_SERVO = 0x83
    CYCLE_MODE = 0x84
    MOVE_CARTESIAN = 0x8A
    MOVE_PULSE = 0x8B


class Service(IntEnum):
    """Service codes (byte 29 of a request; the reply echoes it plus 0x80)."""

    GET_ALL = 0x01  # Get_Attribute_All: attribute 0, every field
    SET_ALL = 0x02  # Set_Attribute_All
    GET_SINGLE = 0x0E  # Get_Attribute_Single: one field, by attribute number
    SET_SINGLE = 0x10  # Set_Attribute_Single


@dataclass(frozen=True)
class Request:
    """One request datagram. ``payload`` is the data part (0-479 bytes)."""

    command: int
    instance: int
    attribute: int
    service: int
    request_id: int
    payload: bytes = b""
    division: int = DIVISION_ROBOT
    block: int = 0

    def encode(self) -> bytes:
        return (_COMMON.pack(IDENTIFIER, HEADER_SIZE, len(self.payload), RESERVE_BYTE, self.division, ACK_REQUEST,
                             self.request_id, self.block, RESERVE)
                + _REQUEST_SUB.pack(self.command, self.instance, self.attribute, self.service, 0) + self.payload)


@dataclass(frozen=True)
class Reply:
    """One reply datagram. ``service`` is the request's service; the wire carries it plus 0x80."""

    service: int
    status: int
    added_status: int
    request_id: int
    payload: bytes = b""
    added_status_size: int = 0  # 0 with status 0; 1 (one 16-bit word) with an added status
    division: int = DIVISION_ROBOT
    block: int = LAST_BLOCK

    @property
    def ok(self) -> bool:
        return self.status == 0

    def encode(self) -> bytes:
        return (_COMMON.pack(IDENTIFIER, HEADER_SIZE, len(self.payload), RESERVE_BYTE, self.division, ACK_REPLY,
                             self.request_id, self.block, RESERVE)
                + _REPLY_SUB.pack((self.service | 0x80) & 0xFF, self.status, self.added_status_size, 0,
                                  self.added_status, 0) + self.payload)


def reply_to(request: Request, payload: bytes = b"") -> Reply:
    """The success reply to a request."""
    return Reply(request.service, 0, 0, request.request_id, payload, division=request.division)


def error_reply(request: Request, status: int, added_status: int = 0) -> Reply:
    """An error reply: status 0x1F with one word of added status, or a stand-alone status byte."""
    return Reply(request.service, status, added_status, request.request_id, b"",
                 added_status_size=1 if added_status else 0, division=request.division)


def _check_frame(data: bytes, ack: int) -> tuple:
    """The common header's fields, after the checks every datagram must pass."""
    if len(data) < HEADER_SIZE:
        raise TruncatedPacket("header", len(data), f"datagram of {len(data)} bytes, a header is {HEADER_SIZE}")
    identifier, header_size, data_size, _reserve, division, got_ack, request_id, block, _ = _COMMON.unpack_from(data)
    if identifier != IDENTIFIER:
        raise BadIdentifier("identifier", 0, f"{identifier!r}, expected {IDENTIFIER!r}")
    if header_size != HEADER_SIZE:
        raise BadHeaderSize("header size", 4, f"0x{header_size:X}, expected 0x{HEADER_SIZE:X}")
    if data_size > MAX_DATA_SIZE:
        raise OversizePacket("data size", 6, f"{data_size} bytes, at most {MAX_DATA_SIZE}")
    if len(data) < HEADER_SIZE + data_size:
        raise TruncatedPacket("data", len(data), f"data size says {data_size} bytes, the datagram has "
                                                 f"{len(data) - HEADER_SIZE}")
    if len(data) > HEADER_SIZE + data_size:
        raise OversizePacket("data", HEADER_SIZE + data_size, f"{len(data) - HEADER_SIZE - data_size} bytes "
                                                              f"beyond the data size ({data_size})")
    if got_ack != ack:
        raise BadAck("ACK", 10, f"{got_ack}, expected {ack} ({'request' if ack == ACK_REQUEST else 'reply'})")
    if division not in (DIVISION_ROBOT, DIVISION_FILE):
        raise BadDivision("division", 9, f"{division}, expected {DIVISION_ROBOT} (robot) or {DIVISION_FILE} (file)")
    return division, request_id, block


def decode_request(data: bytes) -> Request:
    """A request datagram, checked; raises a PacketError subclass naming the field and byte offset."""
    division, request_id, block = _check_frame(data, ACK_REQUEST)
    if division == DIVISION_ROBOT and block != 0:
        raise BadBlockNumber("block number", 12, f"0x{block:X}, a robot-command request has 0")
    command, instance, attribute, service, _ = _REQUEST_SUB.unpack_from(data, 24)
    return Request(command, instance, attribute, service, request_id, bytes(data[HEADER_SIZE:]), division, block)


def decode_reply(data: bytes) -> Reply:
    """A reply datagram, checked; raises a PacketError subclass naming the field and byte offset."""
    division, request_id, block = _check_frame(data, ACK_REPLY)
    service, status, added_size, _, added_status, _ = _REPLY_SUB.unpack_from(data, 24)
    if not service & 0x80:
        raise PacketError("service", 24, f"0x{service:02X}: a reply's service has 0x80 added")
    return Reply(service & 0x7F, status, added_status, request_id, bytes(data[HEADER_SIZE:]), added_size, division, block)


def salvage_request(data: bytes) -> Request | None:
    """The sub-header fields of a datagram too broken to decode, unchecked, so an error reply can still carry
    its request ID and service; None when the datagram is shorter than a header (nothing to answer)."""
    if len(data) < HEADER_SIZE:
        return None
    command, instance, attribute, service, _ = _REQUEST_SUB.unpack_from(data, 24)
    return Request(command, instance, attribute, service, data[11])
