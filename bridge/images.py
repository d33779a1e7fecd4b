"""Camera frames in step messages: a bundle's image inputs, their encodings on the wire, and the checks on them.

A pixel bundle takes, besides its float32 vector, one uint8 image (H, W, C) per camera key. A step carries
them in its header's ``images`` array, one map per camera: ``key``, ``shape`` [H, W, C], ``dtype`` "|u1",
``encoding`` and ``data`` (msgpack bin). Encodings:

- ``raw``: data is the image's H*W*C bytes in C order (row after row, channels interleaved). Always accepted.
- ``png``: data is a standard PNG file of the image: 8-bit gray for C = 1, 8-bit colour for C = 3. Lossless.
- ``jpeg``: data is a standard baseline or progressive JPEG file, colour (C = 3) only. Lossy, so never for
  depth: a depth value a few levels off is a wrong distance, not a little noise.

A PNG or JPEG file holds the picture as any viewer shows it (red is red); the array's channel order is the
image's ``channel_order`` ("RGB" for the sim's cameras), so each side converts for OpenCV, which works in BGR.
The controller offers encodings at hello; the server picks one per camera (welcome ``images``).

Controller side: numpy and msgpack (through bridge.protocol); OpenCV only once a frame is encoded or decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from bridge import protocol as wire
from bridge.errors import BridgeError
from bridge.protocol import ErrorCode, ProtocolError

ENCODINGS = ("raw", "png", "jpeg")
MODALITIES = ("rgb", "depth")
CHANNEL_ORDERS = {"rgb": ("RGB", "BGR"), "depth": ("D",)}
WIRE_DTYPE = "|u1"
# The message cap of a pixel bundle: its frames raw, its vector, and room for the header's fields
# (per camera: key, shape, dtype, encoding and the bin prefix; for the message: the step's own fields).
HEADER_HEADROOM = 4096
PER_IMAGE_HEADROOM = 256

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3}  # colour type -> channels: gray, truecolour (8-bit only)
# JPEG start-of-frame markers (C0-CF except DHT C4, JPG C8, DAC CC) carry the size; these carry no length.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


class ImageSpecError(BridgeError):
    """An image input description that cannot be served or sent (bad key, shape, dtype, modality, encoding)."""


@dataclass(frozen=True)
class ImageSpec:
    """One camera input: what the bundle takes under ``key``, and (in a session) the encoding agreed for it."""

    key: str
    shape: tuple[int, int, int]  # H, W, C
    modality: str  # rgb | depth
    channel_order: str  # RGB | BGR (rgb), D (depth)
    encoding: str = "raw"

    @property
    def nbytes(self) -> int:
        h, w, c = self.shape
        return h * w * c

    def allows(self, encoding: str) -> bool:
        """Whether frames of this camera may travel in ``encoding`` (JPEG: colour only, never depth)."""
        return encoding in ("raw", "png") or (encoding == "jpeg" and self.modality == "rgb")

    def to_wire(self) -> dict[str, Any]:
        """As welcome ``images`` lists it."""
        return {"key": self.key, "shape": list(self.shape), "dtype": WIRE_DTYPE, "modality": self.modality,
                "channel_order": self.channel_order, "encoding": self.encoding}


def image_specs(items: Any, where: str) -> tuple[ImageSpec, ...]:
    """The image inputs a bundle (``bundle.images``, manifest ``observation.images``) or a welcome describes.

    Each item needs ``key``, ``shape`` [H, W, C] and dtype uint8 ("uint8" or "|u1"); ``modality`` and
    ``channel_order`` default from the shape (1 channel or a key ending in "_depth": depth, "D"; else rgb,
    "RGB"), ``encoding`` to raw. Raises ImageSpecError naming ``where`` and the key.
    """
    if items is None:
        return ()
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ImageSpecError(f"{where}: image inputs must be a list of maps, got {type(items).__name__}")
    specs: list[ImageSpec] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) or not item["key"]:
            raise ImageSpecError(f"{where}: image {i} must be a map with a non-empty str key")
        key = item["key"]
        label = f"{where}: camera {key!r}"
        shape = item.get("shape")
        if not (isinstance(shape, Sequence) and len(shape) == 3 and all(type(n) is int and n > 0 for n in shape)):
            raise ImageSpecError(f"{label}: shape must be [H, W, C] of positive ints, got {shape!r}")
        if item.get("dtype", "uint8") not in ("uint8", WIRE_DTYPE):
            raise ImageSpecError(f"{label}: dtype must be uint8, got {item.get('dtype')!r}")
        channels = shape[2]
        modality = item.get("modality") or ("depth" if channels == 1 or key.endswith("_depth") else "rgb")
        if modality not in MODALITIES:
            raise ImageSpecError(f"{label}: modality must be one of {list(MODALITIES)}, got {modality!r}")
        if channels != (3 if modality == "rgb" else 1):
            raise ImageSpecError(f"{label}: a {modality} image has {3 if modality == 'rgb' else 1} channel(s), "
                                 f"shape {list(shape)}")
        order = item.get("channel_order") or CHANNEL_ORDERS[modality][0]
        if order not in CHANNEL_ORDERS[modality]:
            raise ImageSpecError(f"{label}: channel_order of a {modality} image must be one of "
                                 f"{list(CHANNEL_ORDERS[modality])}, got {order!r}")
        encoding = item.get("encoding", "raw")
        if encoding not in ENCODINGS:
            raise ImageSpecError(f"{label}: encoding must be one of {list(ENCODINGS)}, got {encoding!r}")
        spec = ImageSpec(key, (shape[0], shape[1], shape[2]), modality, order, encoding)
        if not spec.allows(encoding):
            raise ImageSpecError(f"{label}: a {modality} image is never sent as {encoding} (lossy depth is wrong depth)")
        if any(s.key == key for s in specs):
            raise ImageSpecError(f"{label} is listed twice")
        specs.append(spec)
    return tuple(specs)


@lru_cache(maxsize=1)
def supported_encodings() -> tuple[str, ...]:
    """What this process can encode and decode: raw always, png and jpeg when OpenCV is installed."""
    try:
        import cv2  # noqa: F401  # lazy: OpenCV only where frames are encoded or decoded
    except ImportError:
        return ("raw",)
    return ENCODINGS


def negotiate(specs: Sequence[ImageSpec], offered: Sequence[str]) -> tuple[ImageSpec, ...]:
    """Per camera, the first offered encoding this side supports and the camera allows; raw when none.

    Offered names this side does not know are skipped (a newer controller may offer more).
    """
    usable = [e for e in offered if e in supported_encodings()]
    return tuple(replace(s, encoding=next((e for e in usable if s.allows(e)), "raw")) for s in specs)


def raw_step_layout(obs_dim: int, specs: Sequence[ImageSpec]) -> wire.FixedHeader:
    """The reference client's step header with every camera's frame raw, in ``specs`` order (wire.FixedHeader).

    Its slots: seq, t_ns, deadline_us, then each camera's H*W*C bytes. The same fields in the same order
    as any step with frames; a server reads such a header without msgpack's general path, its frames
    where they lie in the received frame.
    """
    return wire.FixedHeader({"v": wire.PROTOCOL_VERSION, "type": "step", "seq": wire.U64, "t_ns": wire.U64,
                             "deadline_us": wire.U64,
                             "images": [{"key": s.key, "shape": list(s.shape), "dtype": WIRE_DTYPE, "encoding": "raw",
                                         "data": wire.fixed_bin(s.nbytes)} for s in specs],
                             "arrays": [["<f4", [obs_dim]]]})


def message_cap(obs_dim: int, specs: Sequence[ImageSpec]) -> int:
    """The largest step a pixel bundle needs: every frame raw, the float32 vector, and header room."""
    return HEADER_HEADROOM + 4 * obs_dim + sum(s.nbytes + PER_IMAGE_HEADROOM for s in specs)


# ----------------------------------------------------------------------------------- controller side


@dataclass(frozen=True)
class EncodedFrame:
    """A frame as the camera delivered it: a whole PNG or JPEG file (an MJPEG stream's frames, say).

    Sent as it is where the session agreed that encoding for the camera, so the controller neither
    decodes nor re-encodes it (the file holds true colours, as the wire wants); otherwise decoded here
    and sent as the session agreed. Its size is read from the file's own header.
    """

    encoding: str  # png | jpeg
    data: bytes

    def __post_init__(self) -> None:
        if self.encoding not in ("png", "jpeg"):
            raise ImageSpecError(f"an encoded frame is 'png' or 'jpeg', not {self.encoding!r}")
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise ImageSpecError(f"an encoded frame's data is bytes, not {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))

    def shape(self, key: str) -> tuple[int, int, int]:
        """(H, W, C) from the file's header; ImageSpecError naming the camera if it is not a whole file."""
        try:
            return _png_size(self.data) if self.encoding == "png" else _jpeg_size(self.data)
        except ValueError as exc:
            raise ImageSpecError(f"camera {key!r}: the encoded frame is not a {self.encoding} file: {exc}") from None

    def decoded(self, key: str, channel_order: str) -> np.ndarray:
        """The image as a uint8 (H, W, C) array in ``channel_order``."""
        shape = self.shape(key)
        image = _decoded(self.data, shape, channel_order)
        if image is None:
            raise ImageSpecError(f"camera {key!r}: the {self.encoding} frame does not decode to {list(shape)} uint8")
        return image


def encode_frames(images: Mapping[str, np.ndarray | EncodedFrame], specs: Sequence[ImageSpec], jpeg_quality: int = 90,
                  png_compression: int = 1) -> list[dict[str, Any]]:
    """The ``images`` entries of a step: each camera in its agreed encoding, or raw where that is not smaller.

    An EncodedFrame goes as it is if its encoding is the one agreed for its camera (or the key is unknown),
    else it is decoded and treated as an array. A key the session does not know, or an array that is not
    its camera's uint8 shape, goes raw as it is: the server answers what is wrong with it, naming the camera.
    """
    by_key = {s.key: s for s in specs}
    entries = []
    for key, array in images.items():
        spec = by_key.get(key)
        if type(array) is EncodedFrame:
            if spec is None or array.encoding == spec.encoding:
                entries.append({"key": key, "shape": list(array.shape(key)), "dtype": WIRE_DTYPE,
                                "encoding": array.encoding, "data": array.data})
                continue
            array = array.decoded(key, spec.channel_order)
        a = np.asarray(array)
        raw = a.tobytes()
        entry = {"key": key, "shape": list(a.shape), "dtype": a.dtype.str, "encoding": "raw", "data": raw}
        if spec is not None and spec.encoding != "raw" and a.dtype == np.uint8 and a.shape == spec.shape:
            data = _encode(a, spec, jpeg_quality, png_compression)
            if len(data) < len(raw):  # noise compresses badly: then raw is smaller and costs nothing to decode
                entry.update(encoding=spec.encoding, data=data)
        entries.append(entry)
    return entries


def _encode(image: np.ndarray, spec: ImageSpec, jpeg_quality: int, png_compression: int) -> bytes:
    import cv2  # lazy: OpenCV only where frames are encoded

    if spec.channel_order == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # the file holds true colours; OpenCV writes BGR arrays
    if spec.encoding == "png":
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, png_compression])
    else:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ImageSpecError(f"camera {spec.key!r}: OpenCV could not encode a {spec.shape} image as {spec.encoding}")
    return data.tobytes()


# ----------------------------------------------------------------------------------- server side


def decode_frames(entries: Any, specs: Sequence[ImageSpec], seq: int) -> dict[str, np.ndarray]:
    """A step's ``images``, checked against the session's cameras: uint8 (H, W, C) per key, in ``specs`` order.

    ``specs`` carry the encoding agreed at hello; a frame may come in it or raw. Raises ProtocolError
    (MALFORMED for a wrong field type, else BAD_ARRAY) whose text names the camera.
    """
    if type(entries) is not list:
        raise ProtocolError(ErrorCode.MALFORMED, f"step images must be an array of maps, got {type(entries).__name__}", seq)
    by_key = {s.key: s for s in specs}
    frames: dict[str, np.ndarray] = {}
    for i, entry in enumerate(entries):
        if type(entry) is not dict or type(entry.get("key")) is not str:
            raise ProtocolError(ErrorCode.MALFORMED, f"images[{i}] must be a map with a str key (and shape, dtype, "
                                "encoding, data)", seq)
        key = entry["key"]
        where = f"camera {key!r}"
        spec = by_key.get(key)
        if spec is None:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} is not an image input of this bundle; it takes "
                                f"{list(by_key)}", seq)
        if key in frames:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} is sent twice in one step", seq)
        shape, dtype, encoding, data = (entry.get(f) for f in ("shape", "dtype", "encoding", "data"))
        for name, value, kind in (("shape", shape, list), ("dtype", dtype, str), ("encoding", encoding, str),
                                  ("data", data, bytes)):
            if type(value) is not kind:
                wire_type = {"list": "array", "bytes": "bin"}.get(kind.__name__, kind.__name__)
                raise ProtocolError(ErrorCode.MALFORMED, f"{where}: {name} must be a msgpack {wire_type}, got "
                                    f"{type(value).__name__}", seq)
        if dtype != WIRE_DTYPE:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: dtype {dtype!r}; frames are {WIRE_DTYPE!r} (uint8)", seq)
        if shape != list(spec.shape):
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: shape {shape}; the bundle takes {list(spec.shape)}", seq)
        if encoding == "raw":
            if len(data) != spec.nbytes:
                raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: raw frame of {len(data)} bytes; {list(spec.shape)} "
                                    f"uint8 is {spec.nbytes}", seq)
            frames[key] = np.frombuffer(data, dtype=np.uint8).reshape(spec.shape)
        elif encoding != spec.encoding:
            why = " (depth is never JPEG: lossy depth is wrong depth)" if encoding == "jpeg" and not spec.allows("jpeg") else ""
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: encoding {encoding!r} was not agreed for it{why}; this "
                                f"session: {spec.encoding!r}, or 'raw'", seq)
        else:
            frames[key] = _decode(spec, data, where, seq)
    missing = [k for k in by_key if k not in frames]
    if missing:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"camera {missing[0]!r} is missing: the bundle takes {list(by_key)}, "
                            f"the step carries {list(frames)}", seq)
    return frames if list(frames) == list(by_key) else {k: frames[k] for k in by_key}


def _decode(spec: ImageSpec, data: bytes, where: str, seq: int) -> np.ndarray:
    # The size from the file's own header first: a small file that claims a huge image is refused
    # before OpenCV allocates it.
    try:
        h, w, c = _png_size(data) if spec.encoding == "png" else _jpeg_size(data)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: not a {spec.encoding} file: {exc}", seq) from None
    if (h, w, c) != spec.shape:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: the {spec.encoding} file holds {h}x{w} with {c} channel(s); "
                            f"the bundle takes {list(spec.shape)}", seq)
    image = _decoded(data, spec.shape, spec.channel_order)
    if image is None:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: the {spec.encoding} data does not decode to "
                            f"{list(spec.shape)} uint8", seq)
    return image


def _decoded(data: bytes, shape: tuple[int, int, int], channel_order: str) -> np.ndarray | None:
    """A PNG or JPEG file as a uint8 array of ``shape`` in ``channel_order``; None if it does not decode to that."""
    import cv2  # lazy: OpenCV only where frames are decoded

    # The file holds true colours: OpenCV gives BGR, or RGB where it can decode to RGB (>= 4.10: one call
    # less, the same pixels). EXIF orientation ignored, as IMREAD_UNCHANGED does: a frame is as the camera took it.
    colour = channel_order == "RGB" and shape[2] == 3  # a gray file stays gray: its shape tells the server what is wrong
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None) if colour else None
    flags = cv2.IMREAD_UNCHANGED if rgb_flag is None else rgb_flag | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None or image.dtype != np.uint8 or image.size != shape[0] * shape[1] * shape[2]:
        return None
    if colour and rgb_flag is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image.reshape(shape)


def _png_size(data: bytes) -> tuple[int, int, int]:
    """(H, W, C) from a PNG's IHDR; ValueError for anything but a whole 8-bit gray or RGB PNG."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 45:
        raise ValueError("no PNG signature and IHDR chunk")
    if data[-8:-4] != b"IEND":
        raise ValueError("no IEND chunk at the end (truncated?)")
    width, height = struct.unpack(">II", data[16:24])
    depth, colour = data[24], data[25]
    if depth != 8 or colour not in _PNG_CHANNELS:
        raise ValueError(f"bit depth {depth}, colour type {colour}; frames are 8-bit gray (0) or RGB (2)")
    return height, width, _PNG_CHANNELS[colour]


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    """(H, W, C) from a JPEG's start-of-frame segment; ValueError for data that is not a whole JPEG."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no SOI marker (FF D8) at the start")
    if data[-2:] != b"\xff\xd9":
        raise ValueError("no EOI marker (FF D9) at the end (truncated?)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:
            break  # start of scan before any frame header
        if marker in _JPEG_SOF:
            if i + 10 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width, data[i + 9]
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise ValueError("no start-of-frame segment before the scan")
