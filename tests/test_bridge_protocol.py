"""Wire protocol: round trips, edge values, and a typed error for each kind of bad message."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import numpy as np
import pytest

from bridge import gantry
from bridge import protocol as wire
from bridge.images import image_specs, raw_step_layout
from bridge.protocol import ErrorCode, MsgType, ProtocolError
from bridge.spec import spec_hash

DOC = Path(__file__).resolve().parents[1] / "docs" / "bridge-protocol.md"
V = wire.PROTOCOL_VERSION
GANTRY = gantry.feature_spec()


def step_frames(obs, seq=7, **extra):
    return wire.encode({"v": V, "type": "step", "seq": seq, "t_ns": 5, "deadline_us": 4000, **extra}, [obs])


def test_step_round_trip_keeps_exact_values_and_header():
    obs = np.array([0.0, -1.5, 3.25e-8, np.float32(1e30)], dtype=np.float32)
    message = wire.decode(step_frames(obs, episode=3))
    assert message.header == {
        "v": V, "type": "step", "seq": 7, "t_ns": 5, "deadline_us": 4000, "episode": 3, "arrays": [["<f4", [4]]],
    }
    (decoded,) = message.arrays
    assert decoded.dtype == np.dtype("<f4")
    assert decoded.tobytes() == obs.tobytes()


@pytest.mark.parametrize(
    "array",
    [
        np.array(2.5, dtype=np.float64),  # 0-D
        np.zeros((0,), dtype=np.float32),  # empty
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([np.nan, np.inf, -np.inf], dtype=np.float32),  # travels; the server rejects it as NON_FINITE
        np.array([True, False]),
        np.arange(4, dtype=np.uint8),
    ],
    ids=["0d", "empty", "2d-int64", "nan-inf", "bool", "uint8"],
)
def test_arrays_round_trip_bit_exact(array):
    frames = wire.encode({"v": V, "type": "action", "seq": 1, "re": 1}, [array])
    (decoded,) = wire.decode(frames).arrays
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype
    assert decoded.tobytes() == array.tobytes()


def test_big_endian_input_goes_on_the_wire_little_endian():
    array = np.array([1.0, 2.0], dtype=">f4")
    frames = wire.encode({"v": V, "type": "action", "seq": 1, "re": 1}, [array])
    assert frames[1] == np.array([1.0, 2.0], dtype="<f4").tobytes()
    assert msgpack.unpackb(frames[0])["arrays"] == [["<f4", [2]]]


def test_encode_refuses_object_arrays():
    with pytest.raises(ValueError, match="cannot go on the wire"):
        wire.encode({"v": V, "type": "action", "seq": 1, "re": 1}, [np.array(["a"], dtype=object)])


def test_unknown_fields_are_ignored_and_kept():
    frames = step_frames(np.zeros(2, np.float32), future_field={"nested": [1, 2]})
    assert wire.decode(frames).header["future_field"] == {"nested": [1, 2]}


def test_nested_dicts_round_trip_in_headers():
    header = wire.make_header(MsgType.HEARTBEAT, 3, stats={"safety": {"velocity": 2, "hold": 0}, "p99_us": 81.5})
    assert wire.decode(wire.encode(header)).header["stats"] == {"safety": {"velocity": 2, "hold": 0}, "p99_us": 81.5}


def _error(frames) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        wire.decode(frames)
    return info.value


@pytest.mark.parametrize(
    "frames, code, fragment",
    [
        ([], ErrorCode.MALFORMED, "empty message"),
        ([b"\xc1"], ErrorCode.MALFORMED, "not valid msgpack"),
        ([msgpack.packb([1, 2])], ErrorCode.MALFORMED, "must be a msgpack map"),
        ([msgpack.packb({"v": V, "type": "bye"})], ErrorCode.MALFORMED, "'seq' is missing"),
        ([msgpack.packb({"v": True, "type": "bye", "seq": 1})], ErrorCode.MALFORMED, "'v' must be int, got bool"),
        ([msgpack.packb({"v": V, "type": "bye", "seq": -1})], ErrorCode.MALFORMED, "seq must be an unsigned"),
        ([msgpack.packb({"v": 1, "type": "bye", "seq": 1})], ErrorCode.VERSION_MISMATCH, "version 1 not supported; this peer speaks [2]"),
        ([msgpack.packb({"v": V, "type": "jump", "seq": 1})], ErrorCode.UNKNOWN_TYPE, "'jump'"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1})], ErrorCode.MALFORMED, "'deadline_us' is missing"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 1.5})], ErrorCode.MALFORMED, "'deadline_us' must be int"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 9})], ErrorCode.MALFORMED, "carries 1 array frame"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 9, "arrays": [["<f4", [2]]]}), b"\0" * 7],
         ErrorCode.BAD_ARRAY, "needs 8 bytes, frame has 7"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 9, "arrays": [["O", [1]]]}), b"\0" * 8],
         ErrorCode.BAD_ARRAY, "dtype 'O' not allowed"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 9, "arrays": [["<f4", [-1]]]}), b""],
         ErrorCode.BAD_ARRAY, "non-negative ints"),
        ([msgpack.packb({"v": V, "type": "step", "seq": 1, "deadline_us": 9, "arrays": [["<f4"]]}), b""],
         ErrorCode.MALFORMED, "must be [dtype, shape]"),
        ([b"x"] * 10, ErrorCode.MALFORMED, "10 frames"),
        ([b"x" * (wire.DEFAULT_MAX_MESSAGE_BYTES + 1)], ErrorCode.TOO_LARGE, "the cap is 65536"),
    ],
)
def test_bad_messages_raise_typed_errors(frames, code, fragment):
    error = _error(frames)
    assert error.code == code
    assert fragment in error.text


def test_error_keeps_the_offending_seq_when_it_could_be_read():
    error = _error([msgpack.packb({"v": V, "type": "step", "seq": 41})])
    assert error.seq == 41


@pytest.mark.parametrize(
    "value, fragment",
    [
        (msgpack.ExtType(5, b"payload"), "extension value"),
        (msgpack.ExtType(7, b""), "extension value (type 7)"),  # no data: refused by the hook, not the length cap
        (msgpack.Timestamp(1_700_000_000, 5), "extension value;"),  # ext -1: never passed to ext_hook
        ({"nested": [1, msgpack.Timestamp(0, 0)]}, "extension value"),
    ],
    ids=["ext", "empty-ext", "timestamp", "nested-timestamp"],
)
def test_extension_values_are_refused_anywhere_in_a_header(value, fragment):
    frame = msgpack.packb({"v": V, "type": "heartbeat", "seq": 12, "future_field": value})
    error = _error([frame])
    assert (error.code, error.seq) == (ErrorCode.MALFORMED, 12)
    assert fragment in error.text and "extension types (timestamps included) are not allowed" in error.text


def test_bytes_after_the_header_map_are_refused_with_the_seq():
    error = _error([msgpack.packb({"v": V, "type": "heartbeat", "seq": 13}) + b"\x00\x01"])
    assert (error.code, error.seq) == (ErrorCode.MALFORMED, 13)
    assert "header frame has 2 byte(s) after the msgpack map" in error.text


def test_frame_count_and_size_errors_answer_the_seq_when_the_header_is_readable():
    header = msgpack.packb({"v": V, "type": "step", "seq": 21, "deadline_us": 9})
    too_many = _error([header] + [b"x"] * 9)
    assert (too_many.code, too_many.seq) == (ErrorCode.MALFORMED, 21)
    assert "10 frames; at most 9 allowed (a header and 8 arrays)" in too_many.text
    too_large = _error([header, b"\0" * wire.DEFAULT_MAX_MESSAGE_BYTES])
    assert (too_large.code, too_large.seq) == (ErrorCode.TOO_LARGE, 21)
    # Read for the answer only when frame 0 itself is within the cap, and only a uint64 seq.
    huge_header = msgpack.packb({"v": V, "type": "step", "seq": 22, "pad": "x" * wire.DEFAULT_MAX_MESSAGE_BYTES})
    assert _error([huge_header]).seq is None
    assert _error([msgpack.packb({"v": V, "type": "step", "seq": -3})] + [b"x"] * 9).seq is None
    assert _error([b"\xc1"] + [b"x"] * 9).seq is None


def test_a_reader_refuses_types_it_does_not_accept_before_their_fields():
    welcome = msgpack.packb({"v": V, "type": "welcome", "seq": 3})  # fields missing: still UNKNOWN_TYPE
    with pytest.raises(ProtocolError) as info:
        wire.decode([welcome], accept=wire.SERVER_ACCEPTS, peer="a server")
    assert (info.value.code, info.value.seq) == (ErrorCode.UNKNOWN_TYPE, 3)
    assert info.value.text == "a server does not accept 'welcome' messages (it accepts bye, heartbeat, hello, reset, step)"
    assert _error([welcome]).code == ErrorCode.MALFORMED  # without an accept set, the schema speaks
    for kind in ("welcome", "action", "error"):
        assert kind not in wire.SERVER_ACCEPTS and kind in wire.CONTROLLER_ACCEPTS


@pytest.mark.parametrize("episode, ok", [(0, True), (2**64 - 1, True), (-1, False), (-2**63, False), (1.0, False), (True, False)])
def test_episode_is_an_unsigned_64_bit_int(episode, ok):
    frame = msgpack.packb({"v": V, "type": "reset", "seq": 4, "episode": episode})
    if ok:
        assert wire.decode([frame]).header["episode"] == episode
    else:
        error = _error([frame])
        assert (error.code, error.seq) == (ErrorCode.MALFORMED, 4) and "'episode'" in error.text


def test_hello_needs_only_a_spec_hash():
    header = wire.decode([msgpack.packb({"v": V, "type": "hello", "seq": 1, "spec_hash": "ab" * 32})]).header
    assert "bundle" not in header
    assert "'spec_hash' is missing" in _error([msgpack.packb({"v": V, "type": "hello", "seq": 1, "bundle": "b"})]).text


def test_error_frames_decode_to_code_name_and_text():
    message = wire.decode(wire.error_frames(ErrorCode.STALE_SEQUENCE, "seq 3 is not above 5", seq=9, re=3))
    assert (message.header["code"], message.header["name"], message.header["text"], message.header["re"]) == (
        10, "STALE_SEQUENCE", "seq 3 is not above 5", 3,
    )


def test_a_version_mismatch_is_answered_in_the_peers_version():
    error = _error([msgpack.packb({"v": 1, "type": "hello", "seq": 8, "spec_hash": "x"})])
    assert (error.code, error.seq, error.version) == (ErrorCode.VERSION_MISMATCH, 8, 1)
    header = msgpack.unpackb(wire.error_frames(error.code, error.text, seq=1, re=error.seq, version=error.version)[0])
    assert (header["v"], header["code"], header["re"]) == (1, 2, 8)
    assert header["text"] == "protocol version 1 not supported; this peer speaks [2]"


def test_error_codes_are_stable():
    # Numeric codes are part of the wire contract (docs/bridge-protocol.md); changing one breaks controllers.
    assert {c.name: int(c) for c in ErrorCode} == {
        "MALFORMED": 1, "VERSION_MISMATCH": 2, "UNKNOWN_TYPE": 3, "NO_SESSION": 4, "UNKNOWN_BUNDLE": 5,
        "SPEC_MISMATCH": 6, "ROBOT_MISMATCH": 7, "BAD_ARRAY": 8, "NON_FINITE": 9, "STALE_SEQUENCE": 10,
        "DEADLINE_EXPIRED": 11, "TOO_LARGE": 12, "BUSY": 13, "INTERNAL": 14,
    }


def test_random_bytes_never_escape_as_anything_but_protocol_error():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        frames = [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 4)))]
        try:
            wire.decode(frames)
        except ProtocolError:
            pass


# ------------------------------------------------------------------ the documented example


def _doc_examples() -> dict[str, list[bytes]]:
    """Hex blocks in the doc: ```hex NAME ... ``` with 'frame N' lines followed by hex bytes."""
    text = DOC.read_text()
    examples = {}
    for name, body in re.findall(r"```hex ([\w-]+)\n(.*?)```", text, flags=re.S):
        frames: list[bytearray] = []
        for line in body.splitlines():
            if line.startswith("frame"):
                frames.append(bytearray())
            elif line.strip():
                frames[-1].extend(bytes.fromhex(line.split("|")[0]))
        examples[name] = [bytes(f) for f in frames]
    return examples


def test_doc_worked_example_bytes_still_decode_to_what_the_doc_says():
    examples = _doc_examples()
    assert set(examples) == {"hello", "welcome", "step", "action", "error", "step-fixed", "action-fixed", "step-chunk",
                             "action-chunk", "step-image"}
    step = wire.decode(examples["step"])
    assert step.header == {"v": V, "type": "step", "seq": 2, "t_ns": 1_000_000_000, "deadline_us": 25_000,
                           "arrays": [["<f4", [6]]]}
    np.testing.assert_array_equal(step.arrays[0], np.array([0.0, 0.0, 0.3, 0.2, -0.1, 0.2], dtype=np.float32))
    action = wire.decode(examples["action"])
    assert (action.header["type"], action.header["re"]) == ("action", 2)
    np.testing.assert_array_equal(action.arrays[0], np.array([0.5, -0.25, -1.0], dtype=np.float32))
    hello = wire.decode(examples["hello"])
    assert hello.header["bundle"] == "gantry-reach" and hello.header["robot"]["model"] == "gantry-3"
    assert hello.header["spec_hash"] == spec_hash(GANTRY["observation"], GANTRY["action"], GANTRY["control_hz"])
    welcome = wire.decode(examples["welcome"])
    assert (welcome.header["re"], welcome.header["control_hz"], welcome.header["action_kind"]) == (1, 20.0, "joint_delta")
    assert welcome.header["protocol"] == [2] and welcome.header["spec_hash"] == hello.header["spec_hash"]
    # The layout it carries is the one its hash stands for (what the reference client checks).
    w = welcome.header
    assert spec_hash(w["observation"], w["action"], w["control_hz"]) == w["spec_hash"]
    assert [f["name"] for f in w["observation"]["features"]] == ["joint_position", "goal_tool_position"]
    error = wire.decode(examples["error"])
    assert (error.header["code"], error.header["name"], error.header["re"]) == (10, "STALE_SEQUENCE", 2)
    step_chunk = wire.decode(examples["step-chunk"]).header
    assert (step_chunk["chunk"], step_chunk["t_ns"] - step_chunk["obs_t_ns"]) == (4, 2_000_000)
    chunk = wire.decode(examples["action-chunk"])
    assert (chunk.header["re"], chunk.header["chunk_start_ns"], chunk.header["period_us"]) == (4, step_chunk["obs_t_ns"], 50_000.0)
    np.testing.assert_array_equal(chunk.arrays[0], np.array([[0.5, -0.25, -1.0], [0.25, 0.0, -0.5]], dtype=np.float32))
    assert chunk.header["obs_age_us"] == 2_020.0
    for name in ("step", "action"):
        fixed = wire.decode(examples[f"{name}-fixed"])
        assert fixed.header == wire.decode(examples[name]).header and fixed.arrays[0].tobytes() == examples[name][1]


def test_doc_reading_guide_quotes_bytes_of_the_step_example():
    """Every byte run the guide quotes (`86`, `a1 76`, `02`, ...) is in the step example, in that order."""
    doc = DOC.read_text()
    guide = doc[doc.index("Reading the step header:"):doc.index("Controller → server, `hello`")]
    quoted = [q for q in re.findall(r"`([0-9a-f]{2}(?: [0-9a-f]{2})*)(?: \.\.\.)?`", guide)]
    assert len(quoted) >= 12
    step = _doc_examples()["step"]
    header, observation = step[0].hex(" "), step[1].hex(" ")
    position = 0
    for run in quoted[:-1]:  # the last one is from the observation frame
        position = header.index(run, position)
    assert quoted[-1] in observation
    assert header.startswith("86 a1 76 02") and "the value 2" in guide


def test_doc_camera_frame_example_is_a_2x2_rgb_frame_and_its_guide_quotes_its_bytes():
    step = wire.decode(_doc_examples()["step-image"])
    (camera,) = step.header["images"]
    assert {k: v for k, v in camera.items() if k != "data"} == {"key": "cam", "shape": [2, 2, 3], "dtype": "|u1", "encoding": "raw"}
    np.testing.assert_array_equal(np.frombuffer(camera["data"], np.uint8).reshape(2, 2, 3),
                                  [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]])  # red, green / blue, white
    np.testing.assert_array_equal(step.arrays[0], np.array([0.0, 0.0, 0.3, 0.2, -0.1, 0.2], dtype=np.float32))
    doc = DOC.read_text()
    guide = doc[doc.index("Reading it: `87`"):doc.index("### `reset`")]
    header = _doc_examples()["step-image"][0].hex(" ")
    quoted = re.findall(r"`([0-9a-f]{2}(?: [0-9a-f]{2})*)`", guide)
    assert len(quoted) >= 14 and header.startswith("87 a1 76 02")
    position = 0
    for run in quoted:  # every run the guide quotes is in the header, in the order it reads them
        position = header.index(run, position)


def test_doc_welcome_example_carries_a_real_gantry_bundles_sections(bundle):
    from bridge.docgen import GANTRY_ACTION, GANTRY_OBSERVATION

    assert (GANTRY_OBSERVATION, GANTRY_ACTION) == (bundle.manifest["observation"], bundle.manifest["action"])
    welcome = wire.decode(_doc_examples()["welcome"]).header
    assert (welcome["observation"], welcome["action"], welcome["spec_hash"]) == (
        bundle.manifest["observation"], bundle.manifest["action"], bundle.spec_hash)


def test_doc_example_bytes_are_what_the_code_writes_today():
    from bridge.docgen import example_messages

    examples = _doc_examples()
    for name, frames in example_messages().items():
        assert examples[name] == frames, f"docs/bridge-protocol.md example {name!r} is stale: run python -m bridge.docgen"


# ------------------------------------------------------------------ fixed header layouts


def test_fixed_layouts_decode_to_their_header_with_the_slot_values():
    step = wire.step_header_layout(6)
    frame = step.pack(2**64 - 1, 1_000_000_000, 25_000)
    assert wire.decode_header(frame) == {"v": V, "type": "step", "seq": 2**64 - 1, "t_ns": 1_000_000_000,
                                         "deadline_us": 25_000, "arrays": [["<f4", [6]]]}
    assert step.read(frame) == (2**64 - 1, 1_000_000_000, 25_000)
    action = wire.action_header_layout(3)
    frame = action.pack(9, 8, 7, 21.5, -0.0, 1)
    assert wire.decode_header(frame) == {"v": V, "type": "action", "seq": 9, "re": 8, "t_ns": 7, "queue_us": 21.5,
                                         "infer_us": -0.0, "batch": 1, "arrays": [["<f4", [3]]]}
    assert action.read(frame) == (9, 8, 7, 21.5, -0.0, 1)


def test_fixed_layout_reads_only_frames_of_exactly_its_bytes():
    layout = wire.step_header_layout(6)
    frame, all_ones = layout.pack(5, 6, 7), layout.pack(*[2**64 - 1] * 3)
    in_slot = {i for i, (x, y) in enumerate(zip(layout.pack(0, 0, 0), all_ones)) if x != y}
    assert len(in_slot) == 3 * 8
    for i in range(len(frame)):
        changed = bytearray(frame)
        changed[i] ^= 0x01
        if i in in_slot:
            assert layout.read(bytes(changed)) is not None  # a slot holds any value
        else:
            assert layout.read(bytes(changed)) is None, f"byte {i} is one of the layout's constant bytes"
    # The same header in msgpack's shortest form, a longer or shorter frame, another bundle's size: not this layout.
    assert layout.read(msgpack.packb(wire.decode_header(frame))) is None
    assert layout.read(frame + b"\x00") is None and layout.read(frame[:-1]) is None
    assert wire.step_header_layout(7).read(frame) is None


def test_a_fixed_layout_with_camera_frames_holds_them_as_bins_and_reads_only_its_bytes():
    specs = image_specs([{"key": "cam", "shape": [4, 5, 3]}, {"key": "cam_depth", "shape": [4, 5, 1]}], "test")
    layout = raw_step_layout(6, specs)
    rgb, depth = bytes(range(60)), bytes(range(100, 120))
    frame = layout.pack(7, 8, 9, rgb, depth)
    assert wire.decode_header(frame)["images"] == [
        {"key": "cam", "shape": [4, 5, 3], "dtype": "|u1", "encoding": "raw", "data": rgb},
        {"key": "cam_depth", "shape": [4, 5, 1], "dtype": "|u1", "encoding": "raw", "data": depth}]
    assert layout.read(frame) == (7, 8, 9)
    assert [frame[offset : offset + size] for offset, size in layout.bins] == [rgb, depth]  # where the frames lie
    lowest, highest = layout.pack(0, 0, 0, bytes(60), bytes(20)), layout.pack(*[2**64 - 1] * 3, b"\xff" * 60, b"\xff" * 20)
    in_slot = {i for i, (x, y) in enumerate(zip(lowest, highest)) if x != y}
    assert len(in_slot) == 3 * 8 + 60 + 20
    for i in range(len(frame)):
        changed = bytearray(frame)
        changed[i] ^= 0x01
        assert (layout.read(bytes(changed)) is not None) == (i in in_slot), f"byte {i}"
    assert layout.read(msgpack.packb(wire.decode_header(frame))) is None  # msgpack's shortest form: read the general way
    with pytest.raises(ValueError, match="at least one byte"):
        wire.fixed_bin(0)


def test_fixed_layout_refuses_a_header_that_would_not_validate():
    with pytest.raises(ProtocolError, match="'deadline_us' is missing"):
        wire.FixedHeader({"v": V, "type": "step", "seq": wire.U64})
