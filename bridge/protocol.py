"""The bridge wire protocol: multipart frames of one msgpack header plus raw little-endian arrays.

Frame 0 is a msgpack map (the header); frames 1..n are the raw bytes of the arrays that
``header["arrays"]`` describes as ``[dtype, shape]`` pairs, in order. Nothing is pickled, so a
reader never executes anything a peer sends. Readers ignore header fields they do not know,
which lets either side add optional fields without a version bump. docs/bridge-protocol.md is
the normative description; this module is the reference implementation and imports only
numpy and msgpack so that controllers can use it.
"""

from __future__ import annotations

import enum
import struct
import time
from typing import Any, Iterator, NamedTuple, Sequence

import msgpack
import numpy as np

# Camera frames (hello.image_encodings, welcome.images, step.images: bridge/images.py) are optional fields
# within version 2 too: a server answers welcome.images only for a bundle with image inputs, and only then
# does a controller send step.images, so state-only peers see no change.
# Action chunks (step.chunk, step.obs_t_ns; action.chunk_start_ns, period_us, obs_age_us; welcome.chunk)
# are optional fields within version 2: a peer that does not know them ignores them, and a server sends
# a 2-D chunk only to a step that asked for one, so single-action controllers see no change.
# Version 2: the spec hash is bridge.spec's text hash (version 1 hashed canonical JSON), hello's
# bundle is optional, welcome carries the observation/action sections.
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (2,)

# Default application-level cap on one message (all frames together). The transport cap
# (ZMQ_MAXMSGSIZE, per frame) is higher: a frame above it makes libzmq drop the connection,
# a message between the two gets a typed TOO_LARGE error.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_TRANSPORT_MAX_BYTES = 1024 * 1024
MAX_ARRAYS = 8
MAX_NDIM = 8
ALLOWED_DTYPES = frozenset({"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"})


class MsgType(str, enum.Enum):
    HELLO = "hello"
    WELCOME = "welcome"
    STEP = "step"
    ACTION = "action"
    RESET = "reset"
    HEARTBEAT = "heartbeat"
    ERROR = "error"
    BYE = "bye"


class ErrorCode(enum.IntEnum):
    """Numeric error codes carried by ``error`` messages (stable across versions)."""

    MALFORMED = 1  # header is not a msgpack map, a field has the wrong type, wrong frame count
    VERSION_MISMATCH = 2  # "v" is not a supported protocol version
    UNKNOWN_TYPE = 3  # "type" names no message this peer accepts
    NO_SESSION = 4  # step/reset/heartbeat before a successful hello (or after expiry)
    UNKNOWN_BUNDLE = 5  # hello names a bundle this server does not serve
    SPEC_MISMATCH = 6  # hello's observation/action spec hash differs from the bundle's
    ROBOT_MISMATCH = 7  # hello's robot model or joint names differ from the bundle's
    BAD_ARRAY = 8  # array dtype, shape or byte size does not match what the message requires
    NON_FINITE = 9  # observation holds NaN or inf
    STALE_SEQUENCE = 10  # sequence number not above the last one seen (replayed / out of order)
    DEADLINE_EXPIRED = 11  # the request's deadline passed before inference started
    TOO_LARGE = 12  # message above the server's max_message_bytes
    BUSY = 13  # session table full
    INTERNAL = 14  # the policy produced a non-finite action or raised; request not served


class ProtocolError(Exception):
    """A message that cannot be accepted; carries the code the peer gets back.

    version: the ``v`` to write the error in when it is not ours: a VERSION_MISMATCH answer is
    written in the refused message's version (an error's fields are the same in every version),
    so that a peer of another version can read why it was refused.
    """

    def __init__(self, code: ErrorCode, text: str, seq: int | None = None, version: int | None = None) -> None:
        super().__init__(f"{code.name}: {text}")
        self.code = code
        self.text = text
        self.seq = seq
        self.version = version


class Message(NamedTuple):
    """One decoded message (a NamedTuple: cheap to build on the server's hot path)."""

    header: dict[str, Any]
    arrays: tuple[np.ndarray, ...]


def now_ns() -> int:
    """Sender timestamps: this host's monotonic clock (only differences on one host mean anything)."""
    return time.monotonic_ns()


# ----------------------------------------------------------------------------------- encoding


def _little_endian(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
        array = array.astype(array.dtype.newbyteorder("<"))
    # Not np.ascontiguousarray: it turns 0-D arrays into 1-D ones.
    return array if array.flags.c_contiguous else array.copy(order="C")


def encode(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> list[bytes]:
    """Frames for one message: the packed header, then each array's raw little-endian bytes."""
    if arrays:
        arrays = [_little_endian(a) for a in arrays]
        for a in arrays:
            if a.dtype.str not in ALLOWED_DTYPES:
                raise ValueError(f"dtype {a.dtype.str} cannot go on the wire; allowed: {sorted(ALLOWED_DTYPES)}")
        header = {**header, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
        return [msgpack.packb(header, use_bin_type=True), *(a.tobytes() for a in arrays)]
    return [msgpack.packb(header, use_bin_type=True)]


def make_header(msg_type: MsgType, seq: int, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": msg_type.value, "seq": seq, "t_ns": now_ns(), **fields}


def error_frames(code: ErrorCode, text: str, seq: int, re: int | None, version: int | None = None) -> list[bytes]:
    header = make_header(MsgType.ERROR, seq, code=int(code), name=code.name, text=text)
    if re is not None:
        header["re"] = re
    if version is not None:
        header["v"] = version
    return encode(header)


# ----------------------------------------------------------------------------------- decoding

_INT = frozenset({int})
_NUM = frozenset({int, float})
_STR = frozenset({str})
_MAP = frozenset({dict})
_LIST = frozenset({list})
_TYPE_NAMES = {_INT: "int", _NUM: "number", _STR: "str", _MAP: "map", _LIST: "array"}
# Ints that must also fit an unsigned 64-bit integer: equal to _INT, told apart by identity (cheap).
_UINT = frozenset({int})

# Per message type: (field, accepted exact python types, required). Fields not listed are ignored
# (tolerant reader). Exact type checks keep bool out of int fields: on the wire they differ.
_COMMON = (("v", _INT, True), ("type", _STR, True), ("seq", _INT, True), ("t_ns", _INT, False), ("re", _UINT, False))
SCHEMA: dict[str, tuple[tuple[str, frozenset, bool], ...]] = {
    MsgType.HELLO.value: (("bundle", _STR, False), ("spec_hash", _STR, True), ("robot", _MAP, False), ("client", _STR, False),
                          ("image_encodings", _LIST, False)),
    MsgType.WELCOME.value: (
        ("re", _UINT, True),
        ("bundle", _STR, True),
        ("spec_hash", _STR, True),
        ("session", _STR, True),
        ("obs_dim", _INT, True),
        ("act_dim", _INT, True),
        ("control_hz", _NUM, True),
        ("action_kind", _STR, True),
        ("action_low", _LIST, False),
        ("action_high", _LIST, False),
        ("observation", _MAP, True),
        ("action", _MAP, True),
        ("limits", _MAP, True),
        ("max_message_bytes", _INT, True),
        ("protocol", _LIST, False),
        ("chunk", _INT, False),
        ("images", _LIST, False),
    ),
    MsgType.STEP.value: (("deadline_us", _INT, True), ("episode", _UINT, False), ("chunk", _INT, False),
                         ("obs_t_ns", _UINT, False), ("images", _LIST, False)),
    MsgType.ACTION.value: (("re", _UINT, True), ("queue_us", _NUM, False), ("infer_us", _NUM, False), ("batch", _INT, False),
                           ("chunk_start_ns", _UINT, False), ("period_us", _NUM, False), ("obs_age_us", _NUM, False)),
    MsgType.RESET.value: (("episode", _UINT, False),),
    MsgType.HEARTBEAT.value: (("stats", _MAP, False),),
    MsgType.ERROR.value: (("code", _INT, True), ("text", _STR, True), ("name", _STR, False)),
    MsgType.BYE.value: (("reason", _STR, False),),
}
# How many array frames each type carries.
ARRAY_COUNT = {MsgType.STEP.value: 1, MsgType.ACTION.value: 1}
# What each side accepts: any other type is UNKNOWN_TYPE, answered before its fields are checked.
SERVER_ACCEPTS = frozenset({MsgType.HELLO.value, MsgType.STEP.value, MsgType.RESET.value, MsgType.HEARTBEAT.value,
                            MsgType.BYE.value})
CONTROLLER_ACCEPTS = frozenset({MsgType.WELCOME.value, MsgType.ACTION.value, MsgType.RESET.value,
                                MsgType.HEARTBEAT.value, MsgType.ERROR.value, MsgType.BYE.value})
_DTYPES = {name: np.dtype(name) for name in ALLOWED_DTYPES}
_U64_MAX = 2**64 - 1


def _check_fields(header: dict, fields: tuple[tuple[str, frozenset, bool], ...], seq: int | None) -> None:
    for name, types, required in fields:
        value = header.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise ProtocolError(ErrorCode.MALFORMED, f"header field {name!r} is missing", seq)
        elif type(value) not in types:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"header field {name!r} must be {_TYPE_NAMES[types]}, got {type(value).__name__}", seq
            )
        elif types is _UINT and not 0 <= value <= _U64_MAX:
            raise ProtocolError(ErrorCode.MALFORMED, f"header field {name!r} must be an unsigned 64-bit integer, got {value}", seq)


_MISSING = object()


class _ExtensionValue(Exception):
    """Raised by the unpacker's ext_hook: msgpack extension types are not part of the protocol."""


def _refuse_extension(code: int, data: bytes) -> Any:
    raise _ExtensionValue(code)


def read_seq(frame: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> int | None:
    """The seq of a header frame that will not be accepted, for the error's ``re`` only; else None.

    Error paths only: the frame is unpacked leniently (extension values and bytes after the map
    are tolerated), and only when it is at most ``max_bytes`` long.
    """
    if len(frame) > max_bytes:
        return None
    try:
        header = msgpack.unpackb(frame, ext_hook=lambda code, data: None, timestamp=0)
    except msgpack.ExtraData as exc:
        header = exc.unpacked
    except Exception:
        return None
    seq = header.get("seq") if type(header) is dict else None
    return seq if type(seq) is int and 0 <= seq <= _U64_MAX else None


def decode_header(frame: bytes, accept: frozenset[str] | None = None, peer: str = "this peer") -> dict[str, Any]:
    """Unpack and validate frame 0; raises ProtocolError naming the first problem found.

    accept: the message types this reader takes (SERVER_ACCEPTS, CONTROLLER_ACCEPTS); any other
    type is UNKNOWN_TYPE before its fields are checked. peer names the reader in that error's text.
    """
    try:
        # raw=False and strict_map_key=True are msgpack's defaults (>= 1.0); passing them costs time.
        # Extension values: ext_hook refuses them, and max_ext_len=0 refuses every ext with data
        # before the hook is asked, the timestamp type (-1, which never reaches ext_hook) included.
        header = msgpack.unpackb(frame, ext_hook=_refuse_extension, max_ext_len=0)
    except msgpack.ExtraData as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"header frame has {len(exc.extra)} byte(s) after the msgpack map; "
                            "frame 0 must hold exactly one map", read_seq(frame, len(frame))) from None
    except _ExtensionValue as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"header holds a msgpack extension value (type {exc.args[0]}); "
                            "extension types (timestamps included) are not allowed", read_seq(frame, len(frame))) from None
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        if "max_ext_len" in str(exc):  # an extension with data, the timestamp type (-1) included
            raise ProtocolError(ErrorCode.MALFORMED, "header holds a msgpack extension value; extension types "
                                "(timestamps included) are not allowed", read_seq(frame, len(frame))) from None
        raise ProtocolError(ErrorCode.MALFORMED, f"header is not valid msgpack ({type(exc).__name__})") from None
    if type(header) is not dict:
        raise ProtocolError(ErrorCode.MALFORMED, f"header must be a msgpack map, got {type(header).__name__}")
    seq = header.get("seq")
    seq = seq if type(seq) is int and 0 <= seq <= _U64_MAX else None
    _check_fields(header, _COMMON, seq)
    if header["v"] not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {header['v']} not supported; this peer speaks {list(SUPPORTED_VERSIONS)}",
            seq,
            header["v"],
        )
    if seq is None:
        raise ProtocolError(ErrorCode.MALFORMED, "seq must be an unsigned 64-bit integer")
    kind = header["type"]
    schema = SCHEMA.get(kind)
    if schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", seq)
    if accept is not None and kind not in accept:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"{peer} does not accept {kind!r} messages (it accepts "
                            f"{', '.join(sorted(accept))})", seq)
    _check_fields(header, schema, seq)
    return header


def decode_arrays(header: dict[str, Any], frames: Sequence[bytes]) -> tuple[np.ndarray, ...]:
    """Read-only arrays over the data frames, checked against the header's descriptors."""
    seq = header.get("seq")
    descriptors = header.get("arrays", ())
    expected = ARRAY_COUNT.get(header["type"], 0)
    if type(descriptors) not in (list, tuple) or len(descriptors) != expected or len(frames) != expected:
        count = len(descriptors) if type(descriptors) is list else "no valid"
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"{header['type']} carries {expected} array frame(s); got {len(frames)} frame(s) and {count} descriptor(s)",
            seq,
        )
    arrays = []
    for i, (descriptor, frame) in enumerate(zip(descriptors, frames)):
        if not (type(descriptor) is list and len(descriptor) == 2 and type(descriptor[1]) is list):
            raise ProtocolError(ErrorCode.MALFORMED, f"arrays[{i}] must be [dtype, shape]", seq)
        name, shape = descriptor
        dtype = _DTYPES.get(name) if type(name) is str else None
        if dtype is None:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"arrays[{i}] dtype {name!r} not allowed; use one of {sorted(ALLOWED_DTYPES)}", seq)
        count = 1
        for n in shape:
            if type(n) is not int or not 0 <= n < 2**31:
                raise ProtocolError(ErrorCode.BAD_ARRAY, f"arrays[{i}] shape {shape!r} must be non-negative ints", seq)
            count *= n
        if len(shape) > MAX_NDIM:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"arrays[{i}] has {len(shape)} dimensions; at most {MAX_NDIM}", seq)
        if count * dtype.itemsize != len(frame):
            raise ProtocolError(
                ErrorCode.BAD_ARRAY, f"arrays[{i}] {name}{tuple(shape)} needs {count * dtype.itemsize} bytes, frame has {len(frame)}", seq
            )
        arrays.append(np.frombuffer(frame, dtype=dtype).reshape(shape))
    return tuple(arrays)


class Slot(NamedTuple):
    """A changing value in a FixedHeader layout, at a fixed width: its struct code."""

    code: str  # "Q" uint64, "d" float64, "<n>s" a bin of exactly n bytes


U64 = Slot("Q")
F64 = Slot("d")


def fixed_bin(size: int) -> Slot:
    """A slot for a bin of exactly ``size`` bytes (a camera's raw frame)."""
    if type(size) is not int or size < 1:
        raise ValueError(f"a bin slot holds at least one byte, not {size!r}")
    return Slot(f"{size}s")


class FixedHeader:
    """One header shape in one fixed byte layout: constant bytes around fixed-width value slots.

    msgpack lets an integer be written in any width that holds it (0xcf plus 8 bytes is as valid
    as a one-byte fixint) and a float as float64 (0xcb plus 8 bytes). A sender that always writes
    the same fields in the same order, the changing ones (sequence numbers, timestamps) at those
    widths and its bins at one length each, sends header frames of one length that differ only
    inside the slots. The reference client's ``step`` (with raw camera frames too: bridge.images)
    and the server's ``action`` are written this way, so that both ends pack and read them with
    one ``struct`` call (plus one comparison of the constant bytes) instead of msgpack's general
    path and decode_header's field checks: ~2 us less per message here in a hot loop; with 84x84
    RGB-D frames, after a control period's sleep, ~60 us less on the server (docs/benchmarks.md).

    ``read`` is only a shortcut: a frame that is not byte for byte of this layout (another
    encoder, minimal-width integers, other fields or field order) returns None, and the reader
    decodes it with decode_header as usual. A frame it accepts decodes (by msgpack) to ``header``
    with the slot values filled in, so it passes every check decode_header makes.
    """

    _CODES = {"Q": b"\xcf", "d": b"\xcb"}  # uint64, float64

    def __init__(self, header: dict[str, Any]) -> None:
        """header: every field in wire order; a Slot (U64, F64, fixed_bin) wherever a value changes, at any depth."""
        constants, codes, current = [], [], b""
        for piece in _packed_pieces(header, msgpack.Packer(use_bin_type=True)):
            if type(piece) is Slot:
                size = _bin_size(piece.code)
                constants.append(current + (msgpack.packb(bytes(size))[:-size] if size else self._CODES[piece.code]))
                codes.append(piece.code)
                current = b""
            else:
                current += piece
        constants.append(current)
        self._constants = tuple(constants)
        self._args = [None] * (2 * len(constants) - 1)  # constants at even places, slot values at odd
        self._args[0::2] = constants
        self._pack = struct.Struct(">" + "".join(f"{len(c)}s{code}" for c, code in zip(constants, codes)) + f"{len(current)}s")
        self.size = self._pack.size
        # read skips the bins (pad bytes, "x"): it unpacks the constants and the scalar slots only.
        self._read = struct.Struct(">" + "".join(f"{len(c)}s" + (f"{_bin_size(code)}x" if _bin_size(code) else code)
                                                 for c, code in zip(constants, codes)) + f"{len(current)}s")
        self.bins: list[tuple[int, int]] = []  # (offset, size) of each bin slot's bytes in the frame, in wire order
        self._constant_places: list[int] = []  # where read's unpacked tuple holds each constant, and each scalar
        self._scalar_places: list[int] = []
        place = offset = 0
        for constant, code in zip(constants, codes):
            self._constant_places.append(place)
            place += 1
            offset += len(constant)
            size = _bin_size(code)
            if size:
                self.bins.append((offset, size))
            else:
                self._scalar_places.append(place)
                place += 1
            offset += size or struct.calcsize(">" + code)
        self._constant_places.append(place)
        decode_header(self.pack(*(bytes(_bin_size(c)) if _bin_size(c) else 0 for c in codes)))  # a layout must be a valid header

    def pack(self, *values: int | float | bytes) -> bytes:
        """The header frame with the slots (in wire order) set to ``values``: a bin's value is bytes of its size."""
        args = self._args.copy()
        args[1::2] = values
        return self._pack.pack(*args)

    def read(self, frame: bytes) -> tuple | None:
        """The scalar slots' values of a frame of exactly this layout, else None (decode it the general way).

        A bin slot's bytes are not copied out: they lie at ``bins`` (offset, size) in the frame.
        """
        if len(frame) != self.size:
            return None
        values = self._read.unpack(frame)
        if not self.bins:  # constants and scalars alternate
            return values[1::2] if values[0::2] == self._constants else None
        if tuple([values[i] for i in self._constant_places]) != self._constants:
            return None
        return tuple([values[i] for i in self._scalar_places])


def _packed_pieces(value: Any, packer: msgpack.Packer) -> Iterator[bytes | Slot]:
    """``value`` as msgpack writes it, in order: packed bytes, and the Slots as they are."""
    if type(value) is Slot:
        yield value
    elif type(value) is dict:
        yield packer.pack_map_header(len(value))
        for name, item in value.items():
            yield packer.pack(name)
            yield from _packed_pieces(item, packer)
    elif type(value) is list:
        yield packer.pack_array_header(len(value))
        for item in value:
            yield from _packed_pieces(item, packer)
    else:
        yield packer.pack(value)


def _bin_size(code: str) -> int:
    """The size of a bin slot ("<n>s"); 0 for a scalar slot."""
    return int(code[:-1]) if code.endswith("s") else 0


def step_header_layout(obs_dim: int) -> FixedHeader:
    """The reference client's step header for a bundle taking ``obs_dim`` float32 observations."""
    return FixedHeader({"v": PROTOCOL_VERSION, "type": MsgType.STEP.value, "seq": U64, "t_ns": U64, "deadline_us": U64,
                        "arrays": [["<f4", [obs_dim]]]})


def action_header_layout(act_dim: int) -> FixedHeader:
    """The server's action header for a bundle returning ``act_dim`` float32 actions."""
    return FixedHeader({"v": PROTOCOL_VERSION, "type": MsgType.ACTION.value, "seq": U64, "re": U64, "t_ns": U64,
                        "queue_us": F64, "infer_us": F64, "batch": U64, "arrays": [["<f4", [act_dim]]]})


def check_chunk_request(header: dict[str, Any]) -> int:
    """The number of actions a step asks for: 0 for a single-action step (no ``chunk``), else >= 1."""
    chunk = header.get("chunk", 0)
    if "chunk" in header and chunk < 1:
        raise ProtocolError(ErrorCode.MALFORMED, f"chunk must be at least 1 (the most actions the controller takes), got {chunk}",
                            header.get("seq"))
    return chunk


def check_frames(frames: Sequence[bytes], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
    """The checks on a message's frames that come before its header is read: count and total size.

    The error answers the header's seq (``re``) when frame 0 is at most max_bytes and its seq can
    be read; the header is read for that only, never trusted.
    """
    if not frames:
        raise ProtocolError(ErrorCode.MALFORMED, "empty message")
    if len(frames) > 1 + MAX_ARRAYS:
        raise ProtocolError(ErrorCode.MALFORMED, f"{len(frames)} frames; at most {1 + MAX_ARRAYS} allowed "
                            f"(a header and {MAX_ARRAYS} arrays)", read_seq(frames[0], max_bytes))
    total = sum(map(len, frames))
    if total > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {total} bytes; the cap is {max_bytes}", read_seq(frames[0], max_bytes))


def decode(frames: Sequence[bytes], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, accept: frozenset[str] | None = None,
           peer: str = "this peer") -> Message:
    """Validate a whole message (header frame first, then array frames)."""
    check_frames(frames, max_bytes)
    header = decode_header(frames[0], accept, peer)
    return Message(header, decode_arrays(header, frames[1:]))
