"""Camera frames over the bridge: encodings agreed at hello, frames that arrive intact, batching, refusals, the size cap.

A real server thread on loopback serves the toy pixel policy (genba/pixel_toy.py), whose actions are read-outs
of the frames' means and which keeps copies of the frames it was given; controllers are the reference client
or raw DEALER sockets that send whatever a test needs.
"""

from __future__ import annotations

import re
import struct
import threading
import time

import cv2
import numpy as np
import pytest
import zmq
from bridge_support import dealer, serving, wait_for

from bridge import images as cameras
from bridge import protocol as wire
from bridge.client import BridgeClient, ClientConfig
from bridge.policy import BundleSpecError, PolicyEntry
from genba.pixel_toy import MeanPixelPolicy, gantry_pixel_spec, mean_action

OBS = np.array([0.1, -0.2, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)
RGBD = {"cam": [84, 84, 3], "cam_depth": [84, 84, 1]}


def pixel_policy(shapes=RGBD, name="toy-pixels", record=16) -> MeanPixelPolicy:
    return MeanPixelPolicy(gantry_pixel_spec(shapes), name=name, record_frames=record)


def scene(seed: int, shape=(84, 84)) -> dict[str, np.ndarray]:
    """Frames like a rendered cell's: smooth shading plus a few flat parts (PNG and JPEG both shrink them)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([120 + x * 80 // w, 60 + y * 80 // h, 40 + (x + y) * 20 // (h + w)], axis=-1)
    depth = (170 - y * 16 // h)[..., None].copy()  # a floor tilted away from the camera
    for _ in range(3):
        r, c = rng.integers(0, h - 12), rng.integers(0, w - 12)
        rgb[r : r + 12, c : c + 12] = rng.integers(0, 256, 3)
        depth[r : r + 12, c : c + 12] = rng.integers(90, 140)  # a part, nearer than the floor
    return {"cam": rgb.astype(np.uint8), "cam_depth": depth.astype(np.uint8)}


@pytest.fixture
def connect():
    """Raw controller sockets: connect(endpoint) -> DEALER; all of them closed when the test ends, however it ends."""
    ctx = zmq.Context()
    yield lambda endpoint: dealer(ctx, endpoint)
    ctx.destroy(linger=0)


def client(server, policy, encodings=()) -> BridgeClient:
    return BridgeClient(ClientConfig(server.endpoint, policy.name, policy.spec_hash, image_encodings=encodings))


def request(sock, header, arrays=()):
    sock.send_multipart(wire.encode({"v": wire.PROTOCOL_VERSION, "t_ns": 0, **header}, arrays))
    return wire.decode(sock.recv_multipart())


def raw_hello(sock, policy, encodings=None):
    header = {"type": "hello", "seq": 1, "bundle": policy.name, "spec_hash": policy.spec_hash}
    if encodings is not None:
        header["image_encodings"] = encodings
    return request(sock, header)


def raw_step(sock, seq, entries, obs=OBS, **fields):
    return request(sock, {"type": "step", "seq": seq, "deadline_us": 5_000_000, "images": entries, **fields}, [obs])


def raw_entry(key: str, frame: np.ndarray) -> dict:
    return {"key": key, "shape": list(frame.shape), "dtype": "|u1", "encoding": "raw", "data": frame.tobytes()}


def file_entry(key: str, frame: np.ndarray, encoding: str) -> dict:
    """A frame as a standard PNG/JPEG file holds it (true colours: OpenCV writes BGR arrays)."""
    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.shape[2] == 3 else frame
    ok, data = cv2.imencode(".png" if encoding == "png" else ".jpg", image)
    assert ok
    return {**raw_entry(key, frame), "encoding": encoding, "data": data.tobytes()}


# ------------------------------------------------------------------ frames arrive


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_raw_and_png_frames_arrive_bit_exact(encoding):
    policy = pixel_policy()
    with serving(policy, inference="inline") as server, client(server, policy, (encoding,)) as controller:
        welcome = controller.connect(5.0)
        assert [(s.key, s.shape, s.modality, s.encoding) for s in welcome.images] == [
            ("cam", (84, 84, 3), "rgb", encoding), ("cam_depth", (84, 84, 1), "depth", encoding)]
        sent = [scene(seed) for seed in range(3)]
        # What goes on the wire: these frames shrink as PNG, so the client sends them PNG-encoded.
        assert {e["encoding"] for e in cameras.encode_frames(sent[0], welcome.images)} == {encoding}
        for frames in sent:
            result = controller.step(OBS, 2.0, frames)
            assert result.status == "ok", result.error_text
            assert result.action[:2].tolist() == pytest.approx([mean_action(frames["cam"]), mean_action(frames["cam_depth"])],
                                                               abs=1e-6)
    assert len(policy.frames) == 3
    for got, frames in zip(policy.frames, sent):
        for key in RGBD:
            np.testing.assert_array_equal(got[key], frames[key])


def camera_file(frame: np.ndarray, encoding: str) -> cameras.EncodedFrame:
    """The frame as a camera that encodes its own output delivers it."""
    return cameras.EncodedFrame(encoding, file_entry("cam", frame, encoding)["data"])


def test_a_cameras_own_jpeg_goes_as_it_is_where_jpeg_was_agreed_and_is_decoded_where_not():
    policy = pixel_policy({"cam": [84, 84, 3]})
    frame = scene(7)["cam"]
    jpeg = camera_file(frame, "jpeg")
    true_colours = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    for offered, sent_as in ((("jpeg",), "jpeg"), (("raw",), "raw"), (("png",), "png")):
        policy.frames.clear()
        with serving(policy, inference="inline") as server, client(server, policy, offered) as controller:
            welcome = controller.connect(5.0)
            (entry,) = cameras.encode_frames({"cam": jpeg}, welcome.images)
            assert entry["encoding"] == sent_as
            if sent_as == "jpeg":  # the camera's own bytes: no decoding and re-encoding on the controller
                assert entry["data"] == jpeg.data and entry["shape"] == [84, 84, 3]
            result = controller.step(OBS, 2.0, {"cam": jpeg})
            assert result.status == "ok", result.error_text
        # Whichever way it went, the policy saw the picture the file holds, in the bundle's RGB order.
        np.testing.assert_array_equal(policy.frames[0]["cam"], true_colours)
        assert result.action[0] == pytest.approx(mean_action(true_colours), abs=1e-6)


def test_an_encoded_frame_that_is_not_a_whole_file_is_refused_on_the_controller_naming_the_camera():
    jpeg = camera_file(scene(8)["cam"], "jpeg")
    spec = cameras.ImageSpec("cam", (84, 84, 3), "rgb", "RGB", "jpeg")
    with pytest.raises(cameras.ImageSpecError, match=r"camera 'cam': the encoded frame is not a jpeg file: no EOI"):
        cameras.encode_frames({"cam": cameras.EncodedFrame("jpeg", jpeg.data[:-100])}, [spec])
    with pytest.raises(cameras.ImageSpecError, match=r"camera 'cam': the encoded frame is not a png file: no PNG signature"):
        cameras.encode_frames({"cam": cameras.EncodedFrame("png", jpeg.data)}, [spec])
    with pytest.raises(cameras.ImageSpecError, match="'png' or 'jpeg', not 'h264'"):
        cameras.EncodedFrame("h264", jpeg.data)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment (big-endian TIFF, one IFD entry) saying how a viewer should rotate it."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation, SHORT, one value, padded
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_a_cameras_file_decodes_as_the_camera_took_it_whatever_its_exif_orientation_or_channels():
    frame = scene(9, shape=(48, 84))["cam"]  # not square: a rotation would scramble the rows, keeping the size
    plain = camera_file(frame, "jpeg")
    rotated = cameras.EncodedFrame("jpeg", _with_exif_orientation(plain.data, 6))
    assert cv2.imdecode(np.frombuffer(rotated.data, np.uint8), cv2.IMREAD_COLOR).shape == (84, 48, 3)  # what a viewer shows
    spec = cameras.ImageSpec("cam", (48, 84, 3), "rgb", "RGB", "png")
    np.testing.assert_array_equal(rotated.decoded("cam", "RGB"), plain.decoded("cam", "RGB"))
    (entry,) = cameras.encode_frames({"cam": rotated}, [spec])  # png agreed: decoded on the controller, re-encoded
    assert entry["encoding"] == "png" and entry["shape"] == [48, 84, 3]
    # A gray file for a colour camera stays gray: the step says its shape, and the server answers what is wrong.
    ok, gray = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    (entry,) = cameras.encode_frames({"cam": cameras.EncodedFrame("jpeg", gray.tobytes())}, [spec])
    assert entry["shape"] == [48, 84, 1]


def test_raw_frames_in_the_fixed_layout_are_read_where_they_lie_with_the_same_checks_and_answers(connect):
    policy = pixel_policy()
    frames = scene(4)
    layout = cameras.raw_step_layout(len(OBS), cameras.image_specs(policy.images, "toy"))
    with serving(policy, inference="inline") as server:
        sock = connect(server.endpoint)
        assert raw_hello(sock, policy).header["type"] == "welcome"

        def fixed(seq, obs=OBS, deadline_us=5_000_000, images=frames):
            sock.send_multipart([layout.pack(seq, 0, deadline_us, images["cam"].tobytes(), images["cam_depth"].tobytes()),
                                 np.asarray(obs, np.float32).tobytes()])
            return wire.decode(sock.recv_multipart())

        reply = fixed(2)
        assert reply.header["type"] == "action", reply.header
        assert reply.arrays[0][:2].tolist() == pytest.approx([mean_action(frames["cam"]), mean_action(frames["cam_depth"])],
                                                             abs=1e-6)
        general = raw_step(sock, 3, [raw_entry(k, frames[k]) for k in RGBD])  # the same step, msgpack's shortest form
        assert general.arrays[0].tobytes() == reply.arrays[0].tobytes()
        # The checks after the form are the same as for any step.
        nan_obs = np.where(np.arange(len(OBS)) == 2, np.nan, OBS)
        for reply, name, fragment in ((fixed(3), "STALE_SEQUENCE", "not above the last seen 3"),
                                      (fixed(4, obs=nan_obs), "NON_FINITE", "at [2]"),
                                      (fixed(5, deadline_us=0), "MALFORMED", "deadline_us must be positive")):
            assert (reply.header["type"], reply.header["name"]) == ("error", name) and fragment in reply.header["text"]
        swapped = {"cam": frames["cam"], "cam_depth": scene(5)["cam_depth"]}
        assert fixed(6, images=swapped).arrays[0][1] == pytest.approx(mean_action(swapped["cam_depth"]), abs=1e-6)
    for got, sent in zip(policy.frames, (frames, frames, swapped)):
        for key in RGBD:
            np.testing.assert_array_equal(got[key], sent[key])


def test_a_chunk_request_carries_frames_too():
    policy = pixel_policy()
    frames = scene(5)
    with serving(policy, inference="inline") as server, client(server, policy, ("png",)) as controller:
        controller.connect(5.0)
        seq = controller.send_chunk_request(OBS, time.monotonic_ns(), 2.0, 4, images=frames)
        replies = controller.poll_chunks(2.0)
    assert [r.seq for r in replies] == [seq] and replies[0].actions.shape == (1, 3)  # a single-action bundle: a chunk of one
    assert replies[0].actions[0, :2].tolist() == pytest.approx([mean_action(frames["cam"]), mean_action(frames["cam_depth"])],
                                                               abs=1e-6)
    np.testing.assert_array_equal(policy.frames[0]["cam"], frames["cam"])


def test_noise_goes_raw_when_png_would_be_larger_and_still_arrives_exact():
    policy = pixel_policy()
    noise = {k: np.random.default_rng(1).integers(0, 256, s, dtype=np.uint8) for k, s in RGBD.items()}
    with serving(policy, inference="inline") as server, client(server, policy, ("png",)) as controller:
        welcome = controller.connect(5.0)
        assert {e["encoding"] for e in cameras.encode_frames(noise, welcome.images)} == {"raw"}
        assert controller.step(OBS, 2.0, noise).status == "ok"
    for key in RGBD:
        np.testing.assert_array_equal(policy.frames[0][key], noise[key])


def test_jpeg_carries_colour_within_tolerance_and_depth_never_goes_jpeg():
    policy = pixel_policy()
    frames = scene(7)
    with serving(policy, inference="inline") as server:
        with client(server, policy, ("jpeg",)) as controller:  # only JPEG offered: depth falls back to raw
            welcome = controller.connect(5.0)
            assert {s.key: s.encoding for s in welcome.images} == {"cam": "jpeg", "cam_depth": "raw"}
            assert [e["encoding"] for e in cameras.encode_frames(frames, welcome.images)] == ["jpeg", "raw"]
            assert controller.step(OBS, 2.0, frames).status == "ok"
        with client(server, policy, ("jpeg", "png")) as controller:  # depth takes the next lossless one offered
            assert {s.key: s.encoding for s in controller.connect(5.0).images} == {"cam": "jpeg", "cam_depth": "png"}
            assert controller.step(OBS, 2.0, frames).status == "ok"
    for got in policy.frames:
        error = got["cam"].astype(int) - frames["cam"]
        assert np.abs(error).mean() < 2.0 and np.abs(error).max() < 60  # lossy, but the same picture
        # Each channel keeps its own mean: red stays red (no RGB/BGR swap on either side).
        np.testing.assert_allclose(got["cam"].mean(axis=(0, 1)), frames["cam"].mean(axis=(0, 1)), atol=1.0)
        np.testing.assert_array_equal(got["cam_depth"], frames["cam_depth"])


def test_a_standard_png_or_jpeg_file_from_another_encoder_is_read_in_true_colours(connect):
    """What a vendor's libpng/libjpeg writes: the file holds RGB; the policy gets the RGB array."""
    policy = pixel_policy()
    frames = scene(3)
    with serving(policy, inference="inline") as server:
        sock = connect(server.endpoint)
        welcome = raw_hello(sock, policy, ["jpeg", "png"]).header
        assert [(i["key"], i["encoding"], i["channel_order"]) for i in welcome["images"]] == [
            ("cam", "jpeg", "RGB"), ("cam_depth", "png", "D")]
        reply = raw_step(sock, 2, [file_entry("cam", frames["cam"], "jpeg"), file_entry("cam_depth", frames["cam_depth"], "png")])
        assert reply.header["type"] == "action", reply.header
        reply = raw_step(sock, 3, [raw_entry("cam", frames["cam"]), raw_entry("cam_depth", frames["cam_depth"])])
        assert reply.header["type"] == "action", reply.header  # raw is always accepted
    np.testing.assert_allclose(policy.frames[0]["cam"].mean(axis=(0, 1)), frames["cam"].mean(axis=(0, 1)), atol=1.0)
    np.testing.assert_array_equal(policy.frames[0]["cam_depth"], frames["cam_depth"])
    np.testing.assert_array_equal(policy.frames[1]["cam"], frames["cam"])


# ------------------------------------------------------------------ the handshake


def test_hello_offers_are_matched_per_camera_and_unknown_names_skipped(connect):
    policy = pixel_policy()
    with serving(policy, inference="inline") as server:
        sock = connect(server.endpoint)
        picks = lambda welcome: {i["key"]: i["encoding"] for i in welcome.header["images"]}  # noqa: E731
        assert picks(raw_hello(sock, policy)) == {"cam": "raw", "cam_depth": "raw"}  # no offer: raw
        assert picks(raw_hello(sock, policy, ["webp", "jpeg", "png"])) == {"cam": "jpeg", "cam_depth": "png"}
        refused = raw_hello(sock, policy, ["png", 3]).header
        assert (refused["type"], refused["name"], refused["re"]) == ("error", "MALFORMED", 1)
        assert "image_encodings must be an array of str" in refused["text"]
        refused = raw_hello(sock, policy, "png").header
        assert refused["name"] == "MALFORMED" and "header field 'image_encodings' must be array" in refused["text"]


def test_a_bundle_whose_image_inputs_cannot_be_served_is_refused_at_start_naming_the_camera():
    for images, fragment in (
        ([{"key": "cam", "shape": [84, 84, 4], "dtype": "uint8", "modality": "rgb"}], "camera 'cam': a rgb image has 3 channel"),
        ([{"key": "cam", "shape": [84, 84], "dtype": "uint8"}], "camera 'cam': shape must be [H, W, C]"),
        ([{"key": "cam", "shape": [84, 84, 3], "dtype": "float32"}], "camera 'cam': dtype must be uint8"),
        ([{"key": "cam", "shape": [84, 84, 1], "modality": "thermal"}], "camera 'cam': modality must be one of"),
        ([{"key": "cam", "shape": [84, 84, 3], "channel_order": "D"}], "camera 'cam': channel_order of a rgb image"),
    ):
        policy = pixel_policy()
        policy.images = images
        with pytest.raises(BundleSpecError, match=re.escape(f"bundle 'toy-pixels': {fragment}")):
            PolicyEntry.describe(policy)


# ------------------------------------------------------------------ refusals


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims another size (a decompression bomb's trick): refused before decoding."""
    ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(data.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _corrupt(data: bytes) -> bytes:
    data = bytearray(data)
    data[60:110] = bytes(50)  # inside the compressed pixels; signature, header and end intact
    return bytes(data)


FRAMES = scene(11)
GOOD = [raw_entry("cam", FRAMES["cam"]), raw_entry("cam_depth", FRAMES["cam_depth"])]
PNG = file_entry("cam", FRAMES["cam"], "png")
BAD_FRAMES = {  # name: (the step's images, error name, text fragment); the session agreed png for both cameras
    "wrong shape": ([{**GOOD[0], "shape": [84, 84, 4]}, GOOD[1]], "BAD_ARRAY",
                    "camera 'cam': shape [84, 84, 4]; the bundle takes [84, 84, 3]"),
    "wrong size": ([{**GOOD[0], "data": GOOD[0]["data"][:-1]}, GOOD[1]], "BAD_ARRAY", "camera 'cam': raw frame of 21167 bytes"),
    "wrong dtype": ([{**GOOD[0], "dtype": "<f4"}, GOOD[1]], "BAD_ARRAY", "camera 'cam': dtype '<f4'"),
    "wrong key": ([*GOOD, {**GOOD[0], "key": "wrist"}], "BAD_ARRAY", "camera 'wrist' is not an image input of this bundle"),
    "missing camera": ([GOOD[0]], "BAD_ARRAY", "camera 'cam_depth' is missing"),
    "camera twice": ([GOOD[0], GOOD[0], GOOD[1]], "BAD_ARRAY", "camera 'cam' is sent twice"),
    "not a png": ([{**PNG, "data": b"no picture here"}, GOOD[1]], "BAD_ARRAY", "camera 'cam': not a png file"),
    "truncated png": ([{**PNG, "data": PNG["data"][:-20]}, GOOD[1]], "BAD_ARRAY", "camera 'cam': not a png file: no IEND"),
    "png of another size": ([{**PNG, "data": _png_claiming(100_000, 100_000)}, GOOD[1]], "BAD_ARRAY",
                            "camera 'cam': the png file holds 100000x100000"),
    "png that fails to decode": ([{**PNG, "data": _corrupt(PNG["data"])}, GOOD[1]], "BAD_ARRAY",
                                 "camera 'cam': the png data does not decode"),
    "depth as jpeg": ([GOOD[0], file_entry("cam_depth", FRAMES["cam_depth"], "jpeg")], "BAD_ARRAY",
                      "camera 'cam_depth': encoding 'jpeg' was not agreed for it (depth is never JPEG"),
    "encoding not agreed": ([file_entry("cam", FRAMES["cam"], "jpeg"), GOOD[1]], "BAD_ARRAY",
                            "camera 'cam': encoding 'jpeg' was not agreed for it; this session: 'png'"),
    "data not bin": ([{**GOOD[0], "data": "pixels"}, GOOD[1]], "MALFORMED", "camera 'cam': data must be a msgpack bin"),
    "entry not a map": ([GOOD[0], [1, 2]], "MALFORMED", "images[1] must be a map with a str key"),
    "no images": (None, "BAD_ARRAY", "camera 'cam' is missing"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_a_bad_frame_gets_an_error_naming_the_camera_and_the_server_keeps_serving(connect, case):
    entries, name, fragment = BAD_FRAMES[case]
    policy = pixel_policy()
    with serving(policy, inference="inline") as server:
        sock = connect(server.endpoint)
        assert raw_hello(sock, policy, ["png"]).header["type"] == "welcome"
        if entries is None:
            reply = request(sock, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [OBS])
        else:
            reply = raw_step(sock, 2, entries)
        assert (reply.header["type"], reply.header["name"], reply.header["re"]) == ("error", name, 2)
        assert fragment in reply.header["text"]
        reply = raw_step(sock, 3, GOOD)
        assert (reply.header["type"], reply.header["re"]) == ("action", 3)
        assert policy.batches == [1]  # the bad frame never reached the policy


# ------------------------------------------------------------------ batching


def test_several_controllers_frames_are_batched_into_one_forward_pass_row_by_row():
    policy = pixel_policy(record=0)
    policy.gate.clear()  # the first forward pass waits: the other controllers' requests queue up meanwhile
    n = 6
    with serving(policy, inference="thread") as server:
        controllers = [client(server, policy, ("png",)) for _ in range(n)]
        results = [None] * n
        # Controller i's frames are flat at intensity 20 + 30 i: its action says whose frames it was computed from.
        frames = [{k: np.full(s, 20 + 30 * i, np.uint8) for k, s in RGBD.items()} for i in range(n)]

        def run(i):
            results[i] = controllers[i].step(OBS, 10.0, frames[i])

        try:
            for c in controllers:
                c.connect(5.0)
            threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            threads[0].start()
            assert policy.entered.wait(5.0)  # the first request is in the policy, held
            for t in threads[1:]:
                t.start()
            # Every step read by the server (its seq taken: above the hello's 1), so queued behind the held pass.
            assert wait_for(lambda: sum(s.last_seq > 1 for s in list(server.sessions.values())) == n, 5.0)
            policy.gate.set()
            for t in threads:
                t.join(15.0)
        finally:
            policy.gate.set()
            for c in controllers:
                c.close()
    assert max(policy.batches) > 1, policy.batches
    assert sum(policy.batches) == n
    for i, result in enumerate(results):
        assert result.status == "ok", result
        assert result.action[:2].tolist() == pytest.approx([(20 + 30 * i) / 127.5 - 1.0] * 2, abs=1e-6)
    assert max(r.batch for r in results) == max(policy.batches)


# ------------------------------------------------------------------ the size cap and state bundles


def test_the_message_cap_follows_the_bundles_frames_and_an_oversized_step_is_refused(connect):
    big = {"cam": [120, 160, 3], "cam_depth": [120, 160, 1]}  # 76.8 kB of frames: above the 64 KiB default
    pixels = pixel_policy(big)
    state = MeanPixelPolicy(gantry_pixel_spec({}), name="toy-state")  # no cameras: a state bundle
    cap = wire.DEFAULT_MAX_MESSAGE_BYTES
    with serving(pixels, state, inference="inline") as server:
        sock = connect(server.endpoint)
        welcome = raw_hello(sock, pixels).header
        specs = cameras.image_specs(pixels.images, "test")
        assert welcome["max_message_bytes"] == cameras.message_cap(6, specs) == 4096 + 24 + 57_600 + 19_200 + 2 * 256
        frames = {k: np.full(s, 9, np.uint8) for k, s in big.items()}
        entries = [raw_entry(k, f) for k, f in frames.items()]
        reply = raw_step(sock, 2, entries)
        assert reply.header["type"] == "action", reply.header  # 77 kB served: the cap is the bundle's, not 64 KiB
        over = raw_step(sock, 3, entries, obs=np.zeros(20_000, np.float32))  # 80 kB more in the array frame
        assert (over.header["name"], over.header["re"]) == ("TOO_LARGE", 3)
        assert f"the cap is {welcome['max_message_bytes']}" in over.header["text"]
        # Over the cap in frame 0 itself (frames travel in the header): its seq is not read, so no re.
        padded = raw_step(sock, 4, entries, padding=bytes(welcome["max_message_bytes"]))
        assert padded.header["name"] == "TOO_LARGE" and "re" not in padded.header
        assert raw_step(sock, 5, entries).header["type"] == "action"  # still served

        other = connect(server.endpoint)  # a state bundle's session keeps the configured cap
        state_welcome = raw_hello(other, state).header
        assert state_welcome["max_message_bytes"] == cap and "images" not in state_welcome
        reply = request(other, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [np.zeros(cap // 4, np.float32)])
        assert (reply.header["name"], reply.header["re"]) == ("TOO_LARGE", 2)
        assert f"the cap is {cap}" in reply.header["text"]


def test_state_only_controllers_work_beside_a_pixel_bundle_and_frames_to_a_state_bundle_are_refused(connect):
    pixels = pixel_policy()
    state = MeanPixelPolicy(gantry_pixel_spec({}), name="toy-state")
    with serving(pixels, state, inference="inline") as server:
        with BridgeClient(ClientConfig(server.endpoint, state.name, state.spec_hash)) as controller:
            welcome = controller.connect(5.0)
            assert welcome.images == () and "images" not in welcome.header
            result = controller.step(OBS, 2.0)
            assert result.status == "ok" and result.action.tolist() == pytest.approx(np.tanh(OBS[:3]).tolist(), abs=1e-6)
            refused = controller.step(OBS, 2.0, scene(0))
            assert (refused.status, refused.error_code) == ("error", wire.ErrorCode.BAD_ARRAY)
            assert "bundle 'toy-state' takes no camera frames; the step carries ['cam', 'cam_depth']" in refused.error_text
        sock = connect(server.endpoint)  # a controller that knows nothing of cameras, at a pixel bundle
        assert raw_hello(sock, pixels).header["type"] == "welcome"
        reply = request(sock, {"type": "step", "seq": 2, "deadline_us": 5_000_000}, [OBS])
        assert (reply.header["name"], reply.header["re"]) == ("BAD_ARRAY", 2)
        assert "camera 'cam' is missing: the bundle takes ['cam', 'cam_depth']" in reply.header["text"]
