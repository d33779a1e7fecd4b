"""The controller's side of the bridge: a DEALER client that never blocks past a deadline.

Lazy-Pirate style: every call takes a timeout; a session that hears nothing for ``silence_s``
is dropped, its socket closed with linger 0, and a fresh socket re-does the handshake after a
capped exponential backoff. ZMTP heartbeats (HEARTBEAT_IVL/TIMEOUT) let libzmq notice a dead TCP
peer within ``heartbeat_timeout_ms`` even while the controller is idle. Replies are matched by
the sequence number they echo; anything else is stale and counted, never returned.

A pixel bundle's camera frames go with each step (``step(obs, deadline, images={key: uint8 (H, W, C)})``),
in the encoding the welcome agreed per camera (bridge.images); a frame the camera already encoded
(``bridge.images.EncodedFrame``) goes as it is where its encoding was agreed.

Imports numpy, pyzmq and msgpack only (through bridge.protocol; OpenCV once frames are PNG or JPEG):
controllers must not need torch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import zmq

from bridge import images as cameras
from bridge import protocol as wire
from bridge.endpoints import check_endpoint
from bridge.errors import BridgeError
from bridge.keys import ClientKeys
from bridge.latency import LatencyStats
from bridge.limits import SafetyLimits
from bridge.protocol import ErrorCode, MsgType, ProtocolError
from bridge.spec import SpecError, spec_hash

log = logging.getLogger(__name__)

_F4 = np.dtype("<f4")
# Message types as plain strings: reading an enum member's .value costs ~0.25 us, several times a step.
_ACTION, _BYE, _ERROR, _WELCOME = (t.value for t in (MsgType.ACTION, MsgType.BYE, MsgType.ERROR, MsgType.WELCOME))


class BridgeUnavailable(BridgeError):
    """No welcome from the server in time (down, unreachable, or our CURVE key not allowed)."""


class HandshakeRejected(BridgeError):
    """The server answered the hello with an error (wrong bundle, spec hash, robot or version)."""

    def __init__(self, code: int, text: str) -> None:
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        super().__init__(f"server rejected the handshake: {name}: {text}")
        self.code = code
        self.text = text


class ClientConfigError(BridgeError):
    """A client setting that cannot work (no spec hash)."""


@dataclass
class ClientConfig:
    endpoint: str
    bundle: str | None = None  # the manifest name; None: the server picks the bundle with this spec hash
    spec_hash: str = ""  # required: bridge.spec.spec_hash of the cell's observation/action/control_hz
    robot: dict[str, Any] | None = None  # {"model": ..., "joint_names": [...]}, checked by the server
    name: str = "genba-controller"
    heartbeat_ivl_ms: int = 100  # ZMTP PING interval
    heartbeat_timeout_ms: int = 300  # ZMTP: drop the TCP connection after this long without traffic
    silence_s: float = 1.0  # no reply for this long while waiting -> drop the session
    handshake_timeout_s: float = 0.5
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    hwm: int = 16
    max_message_bytes: int = wire.DEFAULT_TRANSPORT_MAX_BYTES
    keys: ClientKeys | None = None
    # Camera frames (pixel bundles): the encodings offered at hello, preferred first; none offered: raw.
    image_encodings: tuple[str, ...] = ()
    jpeg_quality: int = 90  # 0-100
    png_compression: int = 1  # 0-9: zlib level; 1 is fast and already shrinks rendered frames several times

    def __post_init__(self) -> None:
        if not isinstance(self.spec_hash, str) or not self.spec_hash:
            raise ClientConfigError("ClientConfig.spec_hash is required: the bundle manifest's spec_hash, or "
                                    "bridge.spec.spec_hash(observation, action, control_hz) of the cell")
        self.image_encodings = tuple(self.image_encodings)
        unusable = [e for e in self.image_encodings if e not in cameras.supported_encodings()]
        if unusable:
            raise ClientConfigError(f"image encodings {unusable} cannot be offered here: use "
                                    f"{list(cameras.supported_encodings())} (png and jpeg need OpenCV)")
        if not (0 <= self.jpeg_quality <= 100 and 0 <= self.png_compression <= 9):
            raise ClientConfigError(f"jpeg_quality must be 0-100 and png_compression 0-9, got {self.jpeg_quality}, "
                                    f"{self.png_compression}")


@dataclass(frozen=True)
class Welcome:
    bundle: str
    spec_hash: str
    session: str
    obs_dim: int
    act_dim: int
    control_hz: float
    action_kind: str
    limits: SafetyLimits
    observation: dict[str, Any]  # the bundle manifest's sections: features (name, size, unit, low, high), layout
    action: dict[str, Any]  # kind, low, high, features (with scale), meaning
    header: dict[str, Any] = field(repr=False)
    chunk: int = 1  # actions per chunk the bundle gives (welcome.chunk; absent: 1)
    images: tuple[cameras.ImageSpec, ...] = ()  # a pixel bundle's cameras, each with its agreed encoding (welcome.images)


class StepResult(NamedTuple):
    """Outcome of one policy request. ``action`` is set only when status == "ok"."""

    status: str  # ok | deadline | error | disconnected
    action: np.ndarray | None
    seq: int
    rtt_ns: int = 0
    error_code: int = 0
    error_text: str = ""
    server_queue_us: float = 0.0
    server_infer_us: float = 0.0
    batch: int = 0


class ChunkReply(NamedTuple):
    """A chunk the server sent for one of our chunk requests (``send_chunk_request``)."""

    seq: int  # the request's seq
    actions: np.ndarray  # float32 (n, act_dim): row i for the period starting start_ns + i * period_ns
    start_ns: int  # when the observation was taken (this controller's clock)
    period_ns: int
    sent_ns: int  # when the request went out
    received_ns: int
    obs_age_us: float  # the server's view of the observation's age when inference started
    server_queue_us: float = 0.0
    server_infer_us: float = 0.0


class _FixedAction(NamedTuple):
    """An action reply read through the fixed header layout (wire.action_header_layout)."""

    slots: tuple  # seq, re, t_ns, queue_us, infer_us, batch
    action: np.ndarray


class BridgeClient:
    def __init__(self, config: ClientConfig, context: zmq.Context | None = None) -> None:
        check_endpoint(config.endpoint, "--connect", connect=True)
        self.config = config
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket: zmq.Socket | None = None
        self._rcvtimeo_ms = -1
        self._seq = 0
        self.welcome: Welcome | None = None
        self.stats = LatencyStats()
        self.counts: Counter[str] = Counter()  # stale_replies, bad_replies, reconnects, errors.<NAME>, ...
        self.events: list[tuple[float, str, str]] = []  # (monotonic s, kind, detail)
        self._waiting_since_ns: int | None = None  # oldest unanswered send
        self._backoff_s = config.backoff_initial_s
        self._next_attempt_ns = 0
        self._attempt_end_ns = 0
        self._hello_seq: int | None = None
        self._busy_text = ""  # the last BUSY answer to a hello, for connect()'s error
        self._session_seq0 = 0  # seq of the hello that opened the current session
        self._ever_connected = False
        self._closed = False
        # What the welcome implies: an action's array descriptor and size, and the fixed header
        # layouts of this bundle's step requests and of the server's action replies.
        self._action_arrays: list | None = None
        self._action_bytes = -1
        self._obs_shape: tuple[int] | None = None
        self._step_layout: wire.FixedHeader | None = None
        self._action_layout: wire.FixedHeader | None = None
        self._pixel_layout: wire.FixedHeader | None = None  # a pixel bundle's steps with every frame raw, as agreed
        self._chunk_sent: dict[int, int] = {}  # seq -> send time (monotonic ns) of chunk requests not yet answered

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self.welcome is not None

    def connect(self, timeout_s: float) -> Welcome:
        """Handshake, retrying with backoff until ``timeout_s``; raises if no welcome came."""
        end = time.monotonic() + timeout_s
        while not self.ensure_session(max(0.0, end - time.monotonic())):
            remaining = end - time.monotonic()
            if remaining <= 0:
                if self._busy_text:
                    raise BridgeUnavailable(f"no welcome from {self.config.endpoint} within {timeout_s:g} s: the server "
                                            f"answered BUSY ({self._busy_text})")
                raise BridgeUnavailable(
                    f"no welcome from {self.config.endpoint} within {timeout_s:g} s (is `genba bridge serve` running "
                    "there, and is this controller's public key in its allow-list?)"
                )
            time.sleep(min(remaining, max(0.0, self._next_attempt_ns / 1e9 - time.monotonic()), 0.01))
        assert self.welcome is not None
        return self.welcome

    def ensure_session(self, timeout_s: float) -> bool:
        """Advance the handshake for at most ``timeout_s``; True once a session exists.

        One attempt (fresh socket, one hello) lasts handshake_timeout_s across calls; a failed
        attempt waits out the backoff before the next. Raises HandshakeRejected when the server
        answers with an error, since retrying cannot help.
        """
        if self.welcome is not None:
            return True
        if self._closed:
            raise RuntimeError("client is closed; create a new BridgeClient")
        now = time.monotonic_ns()
        if self._socket is None:
            if now < self._next_attempt_ns:
                return False
            self._open_socket()
            self._attempt_end_ns = now + int(self.config.handshake_timeout_s * 1e9)
            self._hello_seq = None
        end = min(now + int(timeout_s * 1e9), self._attempt_end_ns)
        if self._hello_seq is None:
            seq = self._next_seq()
            header = wire.make_header(MsgType.HELLO, seq, spec_hash=self.config.spec_hash, client=self.config.name)
            if self.config.bundle is not None:
                header["bundle"] = self.config.bundle
            if self.config.robot is not None:
                header["robot"] = self.config.robot
            if self.config.image_encodings:
                header["image_encodings"] = list(self.config.image_encodings)
            if self._send(wire.encode(header), end):
                self._hello_seq = seq
        if self._hello_seq is not None:
            reply = self._receive_reply(self._hello_seq, end)
            if reply is not None:
                if reply.header["type"] == _ERROR and reply.header["code"] == ErrorCode.BUSY:
                    # The session table is full (often of sessions whose controllers went away and have not expired
                    # yet): not final, unlike the other refusals. Retry after the backoff, as after no answer.
                    self.counts["busy"] += 1
                    self._busy_text = reply.header["text"]
                    self._fail_attempt("busy")
                    return False
                if reply.header["type"] == _ERROR:
                    self._fail_attempt("rejected")
                    raise HandshakeRejected(reply.header["code"], reply.header["text"])
                if reply.header["type"] == _WELCOME:
                    try:
                        self.welcome = self._parse_welcome(reply.header)
                    except HandshakeRejected:
                        self._fail_attempt("welcome rejected")
                        raise
                    self._action_arrays = [["<f4", [self.welcome.act_dim]]]
                    self._action_bytes = 4 * self.welcome.act_dim
                    self._obs_shape = (self.welcome.obs_dim,)
                    self._step_layout = wire.step_header_layout(self.welcome.obs_dim)
                    images = self.welcome.images
                    self._pixel_layout = cameras.raw_step_layout(self.welcome.obs_dim, images) \
                        if images and all(s.encoding == "raw" for s in images) else None
                    self._action_layout = wire.action_header_layout(self.welcome.act_dim)
                    self._session_seq0 = self._hello_seq
                    self._busy_text = ""
                    self._backoff_s = self.config.backoff_initial_s
                    if self._ever_connected:
                        self.counts["reconnects"] += 1
                    self._ever_connected = True
                    self._event("connected", f"session {self.welcome.session} for bundle {self.welcome.bundle}")
                    return True
        if time.monotonic_ns() >= self._attempt_end_ns:
            self._fail_attempt("no welcome")
        return False

    def step(self, observation: np.ndarray, deadline_s: float,
             images: dict[str, np.ndarray | cameras.EncodedFrame] | None = None) -> StepResult:
        """Ask for one action; returns by the deadline whatever happens (never raises on timeouts).

        images: a pixel bundle's frames, key -> uint8 (H, W, C) as welcome.images lists them, or the
            camera's own PNG/JPEG file (bridge.images.EncodedFrame).
        """
        start = time.monotonic_ns()
        end = start + int(deadline_s * 1e9)
        # Whatever arrived since the last call (a late reply, a bye) is read, and dealt with, by
        # _receive_reply below before the reply to this request.
        if self._waiting_since_ns is not None:
            self._drop_if_silent(start)
        if self.welcome is None and not self.ensure_session(deadline_s):
            self.stats.miss()
            return StepResult("disconnected", None, 0)
        seq = self._next_seq()  # after any handshake: the server rejects seqs at or below the hello's
        if not self._send(self.pack_step(observation, seq, start, max(1, int(deadline_s * 1e6)), images), end):
            self.stats.miss()
            return StepResult("deadline", None, seq)
        reply = self._receive_reply(seq, end, fixed_action=True)
        now = time.monotonic_ns()
        if reply is None or now > end:  # an answer after the deadline is as useless as none
            self.stats.miss()
            return StepResult("deadline" if self.welcome is not None else "disconnected", None, seq, now - start)
        if type(reply) is _FixedAction:  # the usual reply, already known to be a well-formed action
            rtt = now - start
            self.stats.record(rtt)
            _, _, _, queue_us, infer_us, batch = reply.slots
            return StepResult("ok", reply.action, seq, rtt, 0, "", queue_us, infer_us, batch)
        header = reply.header
        if header["type"] == _ERROR:
            self.stats.miss()
            return StepResult("error", None, seq, now - start, header["code"], header["text"])
        expected = (self.welcome.act_dim,) if self.welcome is not None else None
        if header["type"] != _ACTION or not reply.arrays or reply.arrays[0].shape != expected:
            self.counts["bad_replies"] += 1
            self.stats.miss()
            return StepResult("error", None, seq, now - start, int(ErrorCode.MALFORMED), f"unexpected {header['type']} reply "
                              f"(an action must be <f4 {expected})")
        rtt = now - start
        self.stats.record(rtt)
        get = header.get  # positional arguments below: a NamedTuple built from keywords costs twice as much
        return StepResult("ok", reply.arrays[0], seq, rtt, 0, "", get("queue_us", 0.0), get("infer_us", 0.0), get("batch", 0))

    def pack_step(self, observation: np.ndarray, seq: int, t_ns: int, budget_us: int,
                  images: dict[str, np.ndarray | cameras.EncodedFrame] | None = None) -> list[bytes]:
        """The frames of a step request, as step() sends them (bench/bridge_images.py echoes these very bytes).
        Needs the session's welcome."""
        obs = observation if type(observation) is np.ndarray and observation.dtype == _F4 else np.asarray(observation, _F4)
        raw_frames = self._raw_frames(images) if self._pixel_layout is not None else None
        if raw_frames is not None:  # every camera's frame raw, as agreed: the fixed layout
            header = self._pixel_layout.pack(seq, t_ns, budget_us, *raw_frames)
        elif images is not None or self.welcome.images:  # frames encoded, or not as agreed: the general encoder
            header = wire.msgpack.packb({"v": wire.PROTOCOL_VERSION, "type": "step", "seq": seq, "t_ns": t_ns,
                                         "deadline_us": budget_us, "images": self._frames(images),
                                         "arrays": [["<f4", list(obs.shape)]]})
        elif obs.shape == self._obs_shape:
            header = self._step_layout.pack(seq, t_ns, budget_us)
        else:  # the server will refuse it (BAD_ARRAY), with a message that says why
            header = wire.msgpack.packb({"v": wire.PROTOCOL_VERSION, "type": "step", "seq": seq, "t_ns": t_ns,
                                         "deadline_us": budget_us, "arrays": [["<f4", list(obs.shape)]]})
        return [header, obs.tobytes()]

    # ------------------------------------------------------------------ chunks (bridge.executor drives these)

    def send_chunk_request(self, observation: np.ndarray, obs_t_ns: int, deadline_s: float, max_actions: int,
                           images: dict[str, np.ndarray] | None = None) -> int | None:
        """Send a step asking for up to max_actions actions; returns its seq, or None if nothing was sent.

        Does not wait for the reply: ``poll_chunks`` collects replies as they come. obs_t_ns: when the
        observation (and its camera frames, ``images``) was taken (time.monotonic_ns), the chunk's start.
        """
        now = time.monotonic_ns()
        if self._waiting_since_ns is not None:
            self._drop_if_silent(now)
        if self.welcome is None and not self.ensure_session(0.0):
            return None
        seq = self._next_seq()
        obs = np.asarray(observation, _F4)
        header = wire.make_header(MsgType.STEP, seq, deadline_us=max(1, int(deadline_s * 1e6)), chunk=int(max_actions),
                                  obs_t_ns=int(obs_t_ns))
        if images is not None or self.welcome.images:
            header["images"] = self._frames(images)
        if not self._send(wire.encode(header, [obs]), now + int(deadline_s * 1e9)):
            return None
        self._chunk_sent[seq] = now
        # Requests never answered (lost) are forgotten after the silence limit: their replies would be stale.
        while self._chunk_sent and now - next(iter(self._chunk_sent.values())) > self.config.silence_s * 1e9:
            self._chunk_sent.pop(next(iter(self._chunk_sent)))
        return seq

    def poll_chunks(self, timeout_s: float) -> list[ChunkReply]:
        """Chunk replies received within timeout_s (returns at the first, then takes what is queued).

        Errors answering a chunk request end that request (counted as errors.<NAME>); a single
        action (a server without chunks) is a chunk of one, starting at the observation's time.
        """
        replies: list[ChunkReply] = []
        end = time.monotonic_ns() + int(timeout_s * 1e9)
        while self._socket is not None:
            message = self._receive_reply(None, end if not replies else 0)
            if message is None:
                break
            header = message.header
            seq = header.get("re")
            sent = self._chunk_sent.pop(seq, None)
            if sent is None:
                self.counts["stale_replies"] += 1
                continue
            if header["type"] == _ERROR:
                self.stats.miss()
                continue
            reply = self._chunk_reply(message, seq, sent)
            if reply is not None:
                replies.append(reply)
        return replies

    def _chunk_reply(self, message: wire.Message, seq: int, sent: int) -> ChunkReply | None:
        header, arrays = message.header, message.arrays
        act_dim = self.welcome.act_dim if self.welcome is not None else -1
        actions = arrays[0] if header["type"] == _ACTION and arrays else None
        if actions is not None and actions.ndim == 1:
            actions = actions.reshape(1, -1)
        if actions is None or actions.dtype != _F4 or actions.ndim != 2 or actions.shape[1] != act_dim or not len(actions):
            self.counts["bad_replies"] += 1
            log.warning("dropping a chunk reply that is not <f4 (n >= 1, %d): %s", act_dim,
                        None if actions is None else (actions.dtype.str, actions.shape))
            return None
        now = time.monotonic_ns()
        self.stats.record(now - sent)
        period_ns = int(header.get("period_us", 1e6 / self.welcome.control_hz) * 1000)
        if period_ns <= 0:
            self.counts["bad_replies"] += 1
            return None
        return ChunkReply(seq, actions, header.get("chunk_start_ns", sent), period_ns, sent, now,
                          float(header.get("obs_age_us", 0.0)), header.get("queue_us", 0.0), header.get("infer_us", 0.0))

    def reset(self, timeout_s: float, episode: int | None = None) -> bool:
        """Tell the server an episode starts (policy state cleared); True if acknowledged."""
        return self._request(MsgType.RESET, timeout_s, {} if episode is None else {"episode": episode})

    def heartbeat(self, timeout_s: float, stats: dict[str, Any] | None = None) -> bool:
        """Application-level liveness check; ``stats`` (safety counters, latency) go to server telemetry."""
        return self._request(MsgType.HEARTBEAT, timeout_s, {} if stats is None else {"stats": stats})

    def drop_session(self, reason: str) -> None:
        """Forget the session and close the socket; the next call re-handshakes on a fresh socket."""
        if self.welcome is not None or self._socket is not None:
            self._event("session_dropped", reason)
        self.welcome = None
        self._close_socket()
        self._next_attempt_ns = time.monotonic_ns()  # first retry at once, later ones back off

    def close(self, reason: str = "controller closing") -> None:
        if self._closed:
            return
        linger_ms = 0
        if self.welcome is not None and self._socket is not None:
            try:
                self._socket.send_multipart(wire.encode(wire.make_header(MsgType.BYE, self._next_seq(), reason=reason)), zmq.NOBLOCK)
                linger_ms = 100  # long enough to deliver the bye, never to hang on a dead server
            except zmq.ZMQError:
                pass
        self.welcome = None
        self._close_socket(linger_ms)
        self._closed = True
        if self._own_context:
            self._context.term()

    def report(self) -> dict[str, Any]:
        return {"latency": self.stats.summary(), "counts": dict(self.counts), "connected": self.connected}

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _frames(self, images: dict[str, np.ndarray | cameras.EncodedFrame] | None) -> list[dict[str, Any]]:
        """A step's ``images`` entries, each in its camera's agreed encoding (raw where that is smaller)."""
        cfg = self.config
        specs = self.welcome.images if self.welcome is not None else ()
        return cameras.encode_frames(images or {}, specs, cfg.jpeg_quality, cfg.png_compression)

    def _raw_frames(self, images: dict[str, np.ndarray | cameras.EncodedFrame] | None) -> list[bytes] | None:
        """Each camera's frame as bytes, in the welcome's order, if every one is its camera's uint8 array; else None."""
        specs = self.welcome.images
        if images is None or len(images) != len(specs):
            return None
        frames = []
        for spec in specs:
            image = images.get(spec.key)
            if type(image) is not np.ndarray or image.dtype != np.uint8 or image.shape != spec.shape:
                return None
            frames.append(image.tobytes())
        return frames

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event(self, kind: str, detail: str) -> None:
        self.events.append((time.monotonic(), kind, detail))
        log.info("bridge client %s: %s", kind, detail)

    def _open_socket(self) -> None:
        self._close_socket()
        cfg = self.config
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = cfg.hwm
        sock.rcvhwm = cfg.hwm
        # Not ZMQ_IMMEDIATE: with it, libzmq discards unread inbound messages when a connection
        # drops (a server's bye is lost). Requests queued while disconnected are harmless: the
        # server answers them NO_SESSION or DEADLINE_EXPIRED, and their replies are stale here.
        sock.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes)
        sock.setsockopt(zmq.HEARTBEAT_IVL, cfg.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, cfg.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, max(cfg.heartbeat_timeout_ms, 100))
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(cfg.backoff_max_s * 1000))
        if cfg.keys is not None:
            cfg.keys.apply(sock)
        sock.connect(cfg.endpoint)
        self._socket = sock
        self._rcvtimeo_ms = -1  # libzmq's default: block
        self._waiting_since_ns = None

    def _close_socket(self, linger_ms: int = 0) -> None:
        if self._socket is not None:
            self._socket.close(linger=linger_ms)
            self._socket = None

    def _fail_attempt(self, why: str) -> None:
        self.counts["failed_handshakes"] += 1
        self._close_socket()
        self._next_attempt_ns = time.monotonic_ns() + int(self._backoff_s * 1e9)
        self._backoff_s = min(self._backoff_s * 2.0, self.config.backoff_max_s)
        log.debug("handshake with %s failed (%s); next try in %.3f s", self.config.endpoint, why, self._backoff_s)

    def _drop_if_silent(self, now_ns: int) -> None:
        """Drop a session whose server has not answered anything for silence_s."""
        if (
            self.welcome is not None
            and self._waiting_since_ns is not None
            and now_ns - self._waiting_since_ns > self.config.silence_s * 1e9
        ):
            self.drop_session(f"no reply for {self.config.silence_s:g} s")

    def _send(self, frames: list[bytes], end_ns: int) -> bool:
        """Queue the message for sending, waiting at most until end_ns if the queue (HWM) is full."""
        sock = self._socket
        if sock is None:
            return False
        while True:
            try:
                sock.send_multipart(frames, zmq.NOBLOCK, copy=True)
                break
            except zmq.Again:
                remaining_ms = (end_ns - time.monotonic_ns()) / 1e6
                if remaining_ms <= 0 or not sock.poll(max(1, int(remaining_ms)), zmq.POLLOUT):
                    self.counts["send_timeouts"] += 1
                    if self._waiting_since_ns is None:
                        self._waiting_since_ns = time.monotonic_ns()  # unreachable counts as silence
                    return False
        if self._waiting_since_ns is None:
            self._waiting_since_ns = time.monotonic_ns()
        return True

    def _receive_reply(self, seq: int | None, end_ns: int, fixed_action: bool = False) -> wire.Message | _FixedAction | None:
        """The reply echoing ``seq`` (None: any reply), or None at end_ns. Stale and malformed replies are dropped.

        With fixed_action, an action of the welcomed size whose header is in the server's fixed
        layout (wire.FixedHeader) comes back as a _FixedAction, without the general decoding.
        """
        sock = self._socket
        while sock is not None:
            # Wait in the receive itself (RCVTIMEO), not in a poll followed by a receive: one call
            # into libzmq per reply instead of two plus a Poller. A queued message returns at once.
            remaining_ns = end_ns - time.monotonic_ns()
            timeout_ms = -(-remaining_ns // 1_000_000) if remaining_ns > 0 else 0  # rounded up: never short of end_ns
            if timeout_ms != self._rcvtimeo_ms:
                sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
                self._rcvtimeo_ms = timeout_ms
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                if remaining_ns <= 0:
                    return None
                continue
            self._waiting_since_ns = None
            if fixed_action and len(frames) == 2 and len(frames[1]) == self._action_bytes:
                slots = self._action_layout.read(frames[0])
                if slots is not None:  # slots: seq, re, t_ns, queue_us, infer_us, batch
                    if slots[1] == seq:
                        return _FixedAction(slots, np.frombuffer(frames[1], dtype=_F4))
                    self.counts["stale_replies"] += 1
                    continue
            try:
                message = self._decode(frames)
            except ProtocolError as exc:
                self.counts["bad_replies"] += 1
                log.warning("dropping malformed reply from server: %s", exc)
                continue
            header = message.header
            kind = header["type"]
            if kind == _BYE:
                if self.welcome is not None:
                    self.drop_session(f"server said bye: {header.get('reason', '')}")
                return None
            re = header.get("re")
            if kind == _ERROR:
                code = header["code"]
                self.counts[f"errors.{ErrorCode(code).name if code in ErrorCode._value2member_map_ else code}"] += 1
                # The server restarted or expired us: handshake again. Errors about messages sent
                # before the current session began are stale and must not drop the new session.
                if code == ErrorCode.NO_SESSION and self.welcome is not None and (re or 0) >= self._session_seq0:
                    self.drop_session("server has no session for us")
                    return message if re == seq else None
            if re == seq or seq is None:
                return message
            self.counts["stale_replies"] += 1
        return None

    def _decode(self, frames: list[bytes]) -> wire.Message:
        """wire.decode, with a shortcut for the usual reply: one action of the welcomed size."""
        wire.check_frames(frames, self.config.max_message_bytes)
        header = wire.decode_header(frames[0])
        if len(frames) == 2 and header.get("arrays") == self._action_arrays and len(frames[1]) == self._action_bytes:
            return wire.Message(header, (np.frombuffer(frames[1], dtype=_F4),))
        return wire.Message(header, wire.decode_arrays(header, frames[1:]))

    def _request(self, msg_type: MsgType, timeout_s: float, fields: dict[str, Any]) -> bool:
        start = time.monotonic_ns()
        end = start + int(timeout_s * 1e9)
        self._drop_if_silent(start)
        if not self.ensure_session(timeout_s):
            return False
        seq = self._next_seq()
        if not self._send(wire.encode(wire.make_header(msg_type, seq, **fields)), end):
            return False
        reply = self._receive_reply(seq, end)
        return reply is not None and reply.header["type"] == msg_type.value

    def _parse_welcome(self, header: dict[str, Any]) -> Welcome:
        """The welcome, once it answers our hello and agrees with itself; else HandshakeRejected."""
        def reject(text: str) -> HandshakeRejected:
            return HandshakeRejected(int(ErrorCode.SPEC_MISMATCH), text)

        if self.config.bundle is not None and header["bundle"] != self.config.bundle:
            raise reject(f"welcome names bundle {header['bundle']!r}; we asked for {self.config.bundle!r}")
        if header["spec_hash"] != self.config.spec_hash:
            raise reject(f"welcome has spec hash {header['spec_hash'][:16]}...; we asked for {self.config.spec_hash[:16]}...")
        # The layout it describes must be the one its hash stands for, and the sizes it announces.
        try:
            computed = spec_hash(header["observation"], header["action"], header["control_hz"])
        except SpecError as exc:
            raise reject(f"welcome observation/action cannot be hashed: {exc}") from None
        if computed != header["spec_hash"]:
            raise reject(f"welcome contradicts itself: its observation/action/control_hz hash to {computed[:16]}..., "
                         f"not its spec_hash {header['spec_hash'][:16]}...")
        sizes = [sum(f["size"] for f in header[part]["features"]) for part in ("observation", "action")]
        if sizes != [header["obs_dim"], header["act_dim"]] or header["action"]["kind"] != header["action_kind"]:
            raise reject(f"welcome contradicts itself: features add up to {sizes} values of action kind "
                         f"{header['action']['kind']!r}, it announces {[header['obs_dim'], header['act_dim']]} and "
                         f"{header['action_kind']!r}")
        try:
            limits = SafetyLimits.from_robot_spec(header["limits"], where="welcome.limits")
            images = cameras.image_specs(header.get("images"), "welcome.images")
        except BridgeError as exc:
            raise HandshakeRejected(int(ErrorCode.MALFORMED), str(exc)) from None
        unoffered = [(s.key, s.encoding) for s in images if s.encoding not in ("raw", *self.config.image_encodings)]
        if unoffered:
            raise HandshakeRejected(int(ErrorCode.MALFORMED), f"welcome picks encodings this controller did not offer "
                                    f"{list(self.config.image_encodings) or ['raw']}: {unoffered}")
        return Welcome(
            bundle=header["bundle"],
            spec_hash=header["spec_hash"],
            session=header["session"],
            obs_dim=header["obs_dim"],
            act_dim=header["act_dim"],
            control_hz=float(header["control_hz"]),
            action_kind=header["action_kind"],
            limits=limits,
            observation=header["observation"],
            action=header["action"],
            header=header,
            chunk=header.get("chunk", 1) if header.get("chunk", 1) >= 1 else 1,
            images=images,
        )
