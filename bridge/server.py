"""The bridge server: one ROUTER socket serving many controllers, batched inference.

The I/O thread (``serve_forever``) owns every socket except the inference thread's PAIR end. It
validates each message, answers handshakes, heartbeats and every error itself, and collects the
valid step requests that are ready (it drains every queued message without waiting) into one
batch: one forward pass serves every controller whose request was waiting. A bad message gets a
typed error reply and a (rate-limited) log line; no message can stop the loop. Replies go out
with NOBLOCK under ROUTER_MANDATORY, so a vanished or slow controller costs a dropped reply,
never a stall.

Where the forward pass runs (``ServerConfig.inference``):

- ``inline``: on the I/O thread, replies sent at once. A CPU MLP's forward pass takes a few to
  tens of microseconds; handing it to another thread and back costs more (queue, GIL hand-over,
  doorbell, wake-up: ~0.1-0.4 ms on a 2-core machine), so for such a model the I/O loop is held
  up less by running the pass than it would be by the handoff. Messages arriving meanwhile wait
  in the socket and form the next batch.
- ``thread``: on the ``InferenceWorker`` thread, so even a slow forward pass (GPU, a large net,
  a policy that stalls) never blocks the sockets: handshakes, heartbeats and errors are answered
  while it runs.
- ``auto`` (default): inline when every bundle runs on the CPU (its ``device`` is "cpu") and a
  timed probe at start-up keeps its forward pass at batch 1 under ``inline_budget_us``; otherwise
  thread (``--device cuda``, custom policy objects whose timing is unknown). Batch 1 is what
  controllers at independent phases send (batches of 1.00-1.02 on average in bench/bridge_images.py);
  the thread would tax every one of those requests with its handoff, to spare the sockets a rare
  large batch. Requests that arrive during a pass wait for the next one in either mode; only
  handshakes, heartbeats and errors are answered sooner on the thread. While inline, more than 1%
  of the forward passes actually served in a window of 100 over the budget (large batches included)
  moves inference to the thread for good, so a model that turns slow cannot keep stalling the sockets.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from math import isfinite
from typing import Any, Callable, Sequence

import numpy as np
import zmq

from bridge import images as cameras
from bridge import protocol as wire
from bridge.endpoints import check_endpoint, check_ipc_path_free, is_loopback_endpoint
from bridge.errors import BridgeError
from bridge.inference import BatchRunner, InferenceWorker, StepRequest
from bridge.keys import ServerKeys, load_secret_keypair
from bridge.policy import PolicyEntry, ServedPolicy
from bridge.protocol import ErrorCode, MsgType, ProtocolError
from bridge.telemetry import ServerStats, TelemetryPublisher

log = logging.getLogger(__name__)

_F4 = np.dtype("<f4")
INFERENCE_MODES = ("auto", "inline", "thread")


class ServerConfigError(BridgeError):
    """A server setting that cannot work (duplicate bundle names, unsafe bind, ...)."""


@dataclass
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"
    telemetry: str | None = "tcp://127.0.0.1:5556"
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES  # larger messages: TOO_LARGE (pixel bundles: at least their frames)
    transport_max_bytes: int = wire.DEFAULT_TRANSPORT_MAX_BYTES  # larger frames: libzmq drops the connection
    hwm: int = 256  # per-peer queue bound (messages) on the ROUTER
    max_sessions: int = 64
    session_timeout_s: float = 10.0  # a controller silent this long loses its session
    # A full table makes room by forgetting its longest-silent session if that one is silent this long: three of the
    # reference controller's 1-s heartbeats missed. Controllers that went away without bye (crashed, restarted, or a
    # client opening sessions it drops) otherwise held every slot for session_timeout_s.
    crowded_idle_s: float = 3.0
    # ZMTP PING/PONG on every connection: a peer that answers no PING for peer_timeout_ms (its host lost power, a
    # cable pulled, a NAT forgot it: no FIN ever comes) is disconnected, its file descriptor and queue freed.
    # libzmq answers PINGs on its own I/O thread, so a busy controller is never dropped by this.
    peer_heartbeat_ms: int = 1000
    peer_timeout_ms: int = 5000
    max_batch: int = 64
    inference: str = "auto"  # auto | inline | thread: where forward passes run (see module doc)
    inline_budget_us: float = 200.0  # auto: forward passes longer than this belong on the thread
    telemetry_period_s: float = 0.5
    keys: ServerKeys | None = None
    allow_insecure_remote: bool = False


@dataclass(slots=True)
class Session:
    identity: bytes
    session_id: str
    policy: int
    last_seq: int
    last_seen_ns: int
    client: str = ""
    images: tuple[cameras.ImageSpec, ...] = ()  # a pixel bundle's cameras, with the encodings agreed at hello


SHOWN_TEXT_CHARS = 300  # of a refusal's text in the log and on telemetry: the text may echo up to a whole message


def _clip(text: str, limit: int = SHOWN_TEXT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass
class _RateLimitedLog:
    """At most one warning per error code per second; the rest are counted and summarised."""

    interval_s: float = 1.0
    _last: dict[int, float] = field(default_factory=dict)
    _suppressed: dict[int, int] = field(default_factory=dict)

    def warn(self, code: ErrorCode, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(code, -1e9) >= self.interval_s:
            skipped = self._suppressed.pop(code, 0)
            suffix = f" ({skipped} similar suppressed)" if skipped else ""
            log.warning("rejected message: %s: %s%s", code.name, text, suffix)
            self._last[code] = now
        else:
            self._suppressed[code] = self._suppressed.get(code, 0) + 1


class BridgeServer:
    def __init__(self, policies: Sequence[ServedPolicy], config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        if not policies:
            raise ServerConfigError("serve at least one bundle")
        self.entries = [PolicyEntry.describe(p) for p in policies]
        names = [e.name for e in self.entries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ServerConfigError(f"two bundles share the name {duplicates}; controllers pick bundles by name")
        self._by_name = {e.name: i for i, e in enumerate(self.entries)}
        # What a well-formed step request of each bundle carries (the fast paths in _on_message and _on_step);
        # a pixel bundle's reference client sends its frames raw in one fixed layout too.
        self._step_arrays = [[["<f4", [e.obs_dim]]] for e in self.entries]
        self._step_layouts = [cameras.raw_step_layout(e.obs_dim, e.images) if e.images else wire.step_header_layout(e.obs_dim)
                              for e in self.entries]
        # Where a fixed-layout step's frames lie in its header: (key, offset, size, shape) per camera.
        self._frame_places = [[(s.key, offset, size, s.shape) for s, (offset, size) in zip(e.images, layout.bins)]
                              for e, layout in zip(self.entries, self._step_layouts)]
        # What a pixel bundle's steps need (every frame raw); its cap is this or the configured one, the larger.
        self._frames_bytes = [cameras.message_cap(e.obs_dim, e.images) if e.images else 0 for e in self.entries]
        self._obs_bytes = [e.obs_dim * _F4.itemsize for e in self.entries]
        self._obs_structs = [struct.Struct(f"<{e.obs_dim}f") for e in self.entries]
        if self.config.inference not in INFERENCE_MODES:
            raise ServerConfigError(f"inference {self.config.inference!r}: use one of {list(INFERENCE_MODES)}")
        self._check_limits()
        check_endpoint(self.config.bind, "--bind")
        if self.config.telemetry:
            check_endpoint(self.config.telemetry, "--telemetry")
            if self.config.telemetry == self.config.bind and not self.config.bind.endswith((":*", ":0")):  # not two free ports
                raise ServerConfigError(f"--telemetry {self.config.telemetry} is --bind's endpoint: give it another port")
        for endpoint in (self.config.bind, self.config.telemetry):
            if endpoint and not is_loopback_endpoint(endpoint) and self.config.keys is None and not self.config.allow_insecure_remote:
                raise ServerConfigError(
                    f"{endpoint} is not loopback: pass --curve-secret/--allow to encrypt and authenticate "
                    "controllers, or --insecure to serve unauthenticated on the network"
                )
        self.stats = ServerStats()
        self.sessions: dict[bytes, Session] = {}
        self.endpoint = ""
        self.telemetry_endpoint = ""
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._rate_log = _RateLimitedLog()
        self._context: zmq.Context | None = None
        self._authenticator: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind sockets and start the inference thread (call from the thread that will serve)."""
        cfg = self.config
        self._context = zmq.Context()
        if cfg.keys is not None:
            from zmq.auth.thread import ThreadAuthenticator  # server only: controllers never import it

            self._authenticator = ThreadAuthenticator(self._context, log=logging.getLogger("bridge.auth"))
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(cfg.keys.allow_dir))
        router = self._context.socket(zmq.ROUTER)
        router.linger = 0
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.sndhwm = cfg.hwm
        router.rcvhwm = cfg.hwm
        router.setsockopt(zmq.HEARTBEAT_IVL, cfg.peer_heartbeat_ms)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, cfg.peer_timeout_ms)
        # Twice the largest message cap at least, so a message a little over its cap is answered TOO_LARGE
        # instead of costing the controller its connection.
        router.setsockopt(zmq.MAXMSGSIZE, max(cfg.transport_max_bytes, 2 * max(map(self._cap, range(len(self.entries))))))
        self._secure(router)
        self.endpoint = self._bind(router, cfg.bind)
        self._router = router
        publisher = None
        if cfg.telemetry:
            publisher = self._context.socket(zmq.PUB)
            publisher.linger = 0
            publisher.sndhwm = 1000
            self._secure(publisher)
            self.telemetry_endpoint = self._bind(publisher, cfg.telemetry)
        self.telemetry = TelemetryPublisher(publisher)
        self.runner = BatchRunner(self.entries, self.stats, self._seq, self._send, cfg.max_batch, int(cfg.inline_budget_us * 1e3))
        self._results_endpoint = f"inproc://bridge-results-{id(self)}"
        self._results = self._context.socket(zmq.PAIR)
        self._results.linger = 0
        self._results.bind(self._results_endpoint)
        self.worker: InferenceWorker | None = None
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self.inference_mode = self._choose_inference_mode()
        if self.inference_mode == "thread":
            self._start_worker()
        self._ready.set()
        log.info("serving %s on %s (telemetry %s, inference %s)", [e.name for e in self.entries], self.endpoint,
                 self.telemetry_endpoint or "off", self.inference_mode)

    def _choose_inference_mode(self) -> str:
        mode = self.config.inference
        if mode != "auto":
            return mode
        if any(getattr(e.policy, "device", None) != "cpu" for e in self.entries):
            return "thread"  # a GPU, or a policy object whose timing we cannot vouch for
        slowest_us = max(self._probe_forward_us(i) for i in range(len(self.entries)))
        mode = "inline" if slowest_us <= self.config.inline_budget_us else "thread"
        log.info("forward pass p90 %.1f us (budget %.0f us): inference %s", slowest_us, self.config.inline_budget_us, mode)
        return mode

    def _probe_forward_us(self, index: int) -> float:
        """90th percentile of 60 timed forward passes at batch 1, after a warm-up."""
        times = []
        for i in range(65):
            start = time.perf_counter_ns()
            self.runner.infer(index, 1)
            if i >= 5:
                times.append((time.perf_counter_ns() - start) / 1e3)
        return float(np.percentile(times, 90))

    def _start_worker(self) -> None:
        """Thread mode from now on: the worker runs every batch (one way; the runner has one user)."""
        self.worker = InferenceWorker(self.runner, self._context, self._results_endpoint)
        self.worker.start()
        self._poller.register(self._results, zmq.POLLIN)
        self.inference_mode = "thread"

    def _run_inline(self, pending: list[StepRequest]) -> None:
        runner = self.runner
        runner.serve(pending)
        if runner.forwards >= 100:  # a window: more than 1% of passes over budget -> the thread
            slow, runner.forwards, runner.slow_forwards = runner.slow_forwards, 0, 0
            if slow > 1 and self.config.inference == "auto":
                log.warning("%d of the last 100 forward passes took over %.0f us: inference moves to its own thread",
                            slow, self.config.inline_budget_us)
                self.stats.count("inference.moved_to_thread")
                self._start_worker()

    def request_stop(self) -> None:
        """Ask serve_forever to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def serve_forever(self, on_ready: Callable[[BridgeServer], None] | None = None) -> None:
        """Run the I/O loop until request_stop(); then say bye to every controller and close."""
        if self._context is None:
            self.start()
        if on_ready is not None:
            on_ready(self)
        handlers = {
            MsgType.HELLO.value: self._on_hello,
            MsgType.RESET.value: self._on_reset,
            MsgType.HEARTBEAT.value: self._on_heartbeat,
            MsgType.BYE.value: self._on_bye,
        }
        router, poller, sessions = self._router, self._poller, self.sessions
        period_ns = int(self.config.telemetry_period_s * 1e9)
        next_tick = time.monotonic_ns() + period_ns
        max_batch = self.config.max_batch
        try:
            while not self._stop.is_set():
                timeout_ms = max(0, min(100, (next_tick - time.monotonic_ns()) // 1_000_000))
                ready = poller.poll(timeout_ms)
                if ready:
                    # The poller lists sockets in registration order, the ROUTER first. After the
                    # message it announced, readiness is read from EVENTS, not by catching
                    # zmq.Again: raising costs more than the rest of a message's handling.
                    pending: list[StepRequest] = []
                    readable = ready[0][0] is router
                    for _ in range(max_batch):
                        if not readable:
                            break
                        self._on_message(router.recv_multipart(), pending, handlers)
                        # Only another controller's request can join this batch: with one session,
                        # serve at once (anything else queued is read on the next turn of the loop).
                        readable = len(sessions) > 1 and router.getsockopt(zmq.EVENTS) & zmq.POLLIN
                    worker = self.worker
                    if worker is None:
                        if pending:
                            self._run_inline(pending)
                    else:
                        if pending:
                            worker.submit(pending)
                        self._forward_results(worker)
                now = time.monotonic_ns()
                if now >= next_tick:
                    next_tick = now + period_ns
                    self._tick(now)
                if self.worker is not None and self.worker.failure is not None:
                    raise RuntimeError("inference thread died") from self.worker.failure
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.stats.swap()  # fold the last window into the totals
        for identity in list(self.sessions):
            self._send(identity, wire.encode(wire.make_header(MsgType.BYE, next(self._seq), reason="server shutting down")))
        self.sessions.clear()
        if self.worker is not None:
            self.worker.stop()
            self.worker.join(timeout=5.0)
        self._router.close(linger=200)  # long enough to deliver the byes, never to hang
        for sock in (self._results, self.telemetry.socket):
            if sock is not None:
                sock.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        assert self._context is not None
        self._context.term()
        self._context = None
        log.info("bridge server stopped")

    # ------------------------------------------------------------------ sockets

    def _secure(self, sock: zmq.Socket) -> None:
        keys = self.config.keys
        if keys is None:
            return
        public, secret = load_secret_keypair(keys.secret_file)
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def _check_limits(self) -> None:
        """Limits a server can serve with: a cap of 0 or -1 answered every hello TOO_LARGE or BUSY, and a NaN time
        failed deep inside (int(nan)); each named by its command-line flag."""
        c = self.config
        counts = {"--max-message-bytes": c.max_message_bytes, "--max-sessions": c.max_sessions, "max_batch": c.max_batch,
                  "hwm": c.hwm, "peer_heartbeat_ms": c.peer_heartbeat_ms, "peer_timeout_ms": c.peer_timeout_ms}
        for flag, value in counts.items():
            if type(value) is not int or value < 1:
                raise ServerConfigError(f"{flag} must be an integer >= 1, got {value!r}")
        seconds = {"--session-timeout": c.session_timeout_s, "--inline-budget-us": c.inline_budget_us,
                   "telemetry_period_s": c.telemetry_period_s, "crowded_idle_s": c.crowded_idle_s}
        for flag, value in seconds.items():
            if not (math.isfinite(value) and value > 0):
                raise ServerConfigError(f"{flag} must be a number > 0, got {value}")

    @staticmethod
    def _bind(sock: zmq.Socket, endpoint: str) -> str:
        check_ipc_path_free(endpoint)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            hint = " (is another server using it?)" if exc.errno == zmq.EADDRINUSE else ""  # not for a missing ipc folder
            raise ServerConfigError(f"cannot bind {endpoint}: {zmq.strerror(exc.errno)}{hint}") from None
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _send(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            self._router.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.Again:  # the controller is not reading: its queue is full
            self.stats.count("dropped_replies")
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the controller disconnected
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats.count("dropped_replies")

    def _forward_results(self, worker: InferenceWorker) -> None:
        """Send every reply the inference thread has queued (after consuming its doorbells)."""
        results, outbox = self._results, worker.outbox
        while results.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            results.recv()
        while outbox:
            self._send(*outbox.popleft())

    # ------------------------------------------------------------------ messages

    def _on_message(self, frames: list[bytes], pending: list[StepRequest], handlers: dict) -> None:
        identity = frames[0]
        now = time.monotonic_ns()
        try:
            body = frames[1:]
            fixed = self._fixed_layout_step(identity, body)
            if fixed is not None:  # the usual step request, already known to be well-formed
                index, seq, deadline_us, images = fixed
                self._session_for(identity, seq, now)
                self._accept_step(identity, index, seq, deadline_us, body[1], now, pending, images=images)
                return
            session = self.sessions.get(identity)
            wire.check_frames(body, self.config.max_message_bytes if session is None else self._cap(session.policy))
            header = wire.decode_header(body[0], wire.SERVER_ACCEPTS, "a server")
            kind = header["type"]
            if kind == "step":
                self._on_step(identity, header, body, now, pending)
                return
            handler = handlers.get(kind)
            if handler is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"a server does not accept {kind!r} messages", header["seq"])
            wire.decode_arrays(header, body[1:])  # these types carry no arrays: checks the frame count
            handler(identity, header, body, now)
        except ProtocolError as exc:
            self._reject(identity, exc)

    def _fixed_layout_step(self, identity: bytes, body: list[bytes]) \
            -> tuple[int, int, int, dict[str, np.ndarray] | None] | None:
        """(bundle index, seq, deadline_us, frames) of a step request whose header is in the reference client's
        fixed layout (wire.step_header_layout; a pixel bundle's: images.raw_step_layout) with one observation of
        its bundle's size; else None.

        Such a request passes every check up to the session's: what is left is the sequence number,
        the observation's values and the deadline. Its frames are read-only views of the header frame.
        """
        session = self.sessions.get(identity)
        if session is None or len(body) != 2:
            return None
        index = session.policy
        header, observation = body
        if len(observation) != self._obs_bytes[index] or len(header) + len(observation) > self._cap(index):
            return None
        slots = self._step_layouts[index].read(header)
        if slots is None:
            return None
        places = self._frame_places[index]
        images = {key: np.frombuffer(header, np.uint8, size, offset).reshape(shape) for key, offset, size, shape in places} \
            if places else None
        return index, slots[0], slots[2], images

    def _cap(self, index: int) -> int:
        """The message cap of a session of bundle ``index``: the configured one, or what its frames need."""
        return max(self.config.max_message_bytes, self._frames_bytes[index])

    def _reject(self, identity: bytes, exc: ProtocolError) -> None:
        self.stats.count(f"errors.{exc.code.name}")
        # The reply says it all; the log and telemetry get at most SHOWN_TEXT_CHARS of it, since a text can echo a
        # 64 KiB field (an unknown type, a bundle name), and one such line a second per code was 15 GB a day.
        shown = _clip(exc.text)
        self._rate_log.warn(exc.code, shown)
        self.telemetry.publish("error", {"code": int(exc.code), "name": exc.code.name, "text": shown, "re": exc.seq})
        self._send(identity, wire.error_frames(exc.code, exc.text, next(self._seq), exc.seq, exc.version))

    def _session_for(self, identity: bytes, seq: int, now: int) -> Session:
        session = self.sessions.get(identity)
        if session is None:
            raise ProtocolError(ErrorCode.NO_SESSION, "no session: send hello first (the server may have restarted)", seq)
        if seq <= session.last_seq:
            raise ProtocolError(ErrorCode.STALE_SEQUENCE, f"seq {seq} is not above the last seen {session.last_seq}", seq)
        session.last_seq = seq
        session.last_seen_ns = now
        return session

    def _on_step(self, identity: bytes, header: dict[str, Any], body: list[bytes], now: int, pending: list[StepRequest]) -> None:
        seq = header["seq"]
        session = self._session_for(identity, seq, now)
        index = session.policy
        frames = body[1:]
        if header.get("arrays") != self._step_arrays[index] or len(frames) != 1 or len(frames[0]) != self._obs_bytes[index]:
            # Not the one well-formed observation: the general decoder names the problem.
            (obs,) = wire.decode_arrays(header, frames)
            entry = self.entries[index]
            if obs.dtype != _F4 or obs.shape != (entry.obs_dim,):
                raise ProtocolError(ErrorCode.BAD_ARRAY, f"observation must be <f4 ({entry.obs_dim},), got {obs.dtype.str}{obs.shape}", seq)
        images = None
        if session.images:
            images = cameras.decode_frames(header.get("images", []), session.images, seq)
        elif header.get("images"):
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"bundle {self.entries[index].name!r} takes no camera frames; the step "
                                f"carries {[i.get('key') for i in header['images'] if type(i) is dict][:8]}", seq)
        chunk = wire.check_chunk_request(header)
        if not chunk:
            self._accept_step(identity, index, seq, header["deadline_us"], frames[0], now, pending, images=images)
            return
        # A chunk request: its start is when the observation was taken (obs_t_ns), else when it was sent.
        sent_ns = header.get("t_ns", 0)
        obs_t_ns = header.get("obs_t_ns", sent_ns)
        if obs_t_ns > sent_ns > 0:
            raise ProtocolError(ErrorCode.MALFORMED, f"obs_t_ns {obs_t_ns} is after the step's t_ns {sent_ns}: an observation "
                                "is taken before it is sent", seq)
        self._accept_step(identity, index, seq, header["deadline_us"], frames[0], now, pending,
                          (chunk, obs_t_ns, (sent_ns - obs_t_ns) / 1e3 if sent_ns else 0.0), images)

    def _accept_step(self, identity: bytes, index: int, seq: int, deadline_us: int, frame: bytes, now: int,
                     pending: list[StepRequest], chunk: tuple[int, int, float] = (0, 0, 0.0),
                     images: dict[str, np.ndarray] | None = None) -> None:
        """The checks on a step request's values (its form is checked): finite observation, positive deadline."""
        if not all(map(isfinite, self._obs_structs[index].unpack(frame))):  # struct + math: a third of numpy's cost here
            finite = np.isfinite(np.frombuffer(frame, dtype=_F4))
            raise ProtocolError(ErrorCode.NON_FINITE, f"observation has non-finite values at {np.flatnonzero(~finite).tolist()}", seq)
        if deadline_us <= 0:
            raise ProtocolError(ErrorCode.MALFORMED, f"deadline_us must be positive, got {deadline_us}", seq)
        pending.append(StepRequest(identity, seq, index, frame, now, now + deadline_us * 1000, *chunk, images))

    def _served(self) -> str:
        """The served bundles for error texts: name, robot model (a controller of another arm asks in vain) and spec hash
        prefix of each."""
        return ", ".join(f"{e.name!r} ({e.limits.model + ', ' if e.limits.model else ''}spec {e.spec_hash[:16]}...)"
                         for e in self.entries)

    def _hello_bundle(self, header: dict[str, Any], seq: int) -> int:
        """The index of the bundle a hello asks for: by name, or without one by its spec hash."""
        wanted = header["spec_hash"]
        name = header.get("bundle")
        if name is None:
            matches = [i for i, e in enumerate(self.entries) if e.spec_hash == wanted]
            if not matches:
                raise ProtocolError(ErrorCode.SPEC_MISMATCH, f"no served bundle has spec hash {wanted[:16]}...; served: {self._served()}", seq)
            if len(matches) > 1:
                raise ProtocolError(ErrorCode.UNKNOWN_BUNDLE, f"{len(matches)} served bundles have spec hash {wanted[:16]}...: "
                                    f"name one in hello.bundle: {[self.entries[i].name for i in matches]}", seq)
            return matches[0]
        index = self._by_name.get(name)
        if index is None:
            raise ProtocolError(ErrorCode.UNKNOWN_BUNDLE, f"bundle {name!r} not served here (use the manifest name, not "
                                f"the directory); served: {self._served()}", seq)
        entry = self.entries[index]
        if wanted != entry.spec_hash:
            raise ProtocolError(ErrorCode.SPEC_MISMATCH, f"spec hash {wanted[:16]}... differs from bundle {entry.name!r} "
                                f"({entry.spec_hash[:16]}...)", seq)
        return index

    def _on_hello(self, identity: bytes, header: dict[str, Any], body: list[bytes], now: int) -> None:
        seq = header["seq"]
        index = self._hello_bundle(header, seq)
        entry = self.entries[index]
        robot = header.get("robot")
        if robot is not None:
            model, joints = robot.get("model"), robot.get("joint_names")
            if model is not None and type(model) is not str:
                raise ProtocolError(ErrorCode.MALFORMED, f"robot.model must be str, got {type(model).__name__}", seq)
            if joints is not None and not (type(joints) is list and all(type(j) is str for j in joints)):
                raise ProtocolError(ErrorCode.MALFORMED, "robot.joint_names must be an array of str", seq)
            if model and entry.limits.model and model != entry.limits.model:
                raise ProtocolError(ErrorCode.ROBOT_MISMATCH, f"robot model {model!r} differs from the bundle's {entry.limits.model!r}", seq)
            if joints is not None and joints != list(entry.limits.joint_names):
                raise ProtocolError(ErrorCode.ROBOT_MISMATCH, f"joint names {joints!r} differ from the bundle's {list(entry.limits.joint_names)}", seq)
        if identity not in self.sessions and len(self.sessions) >= self.config.max_sessions:
            self._expire(now)
            if len(self.sessions) >= self.config.max_sessions and not self._evict_idlest(now):
                raise ProtocolError(ErrorCode.BUSY, f"{self.config.max_sessions} controllers connected; try later", seq)
        offered = header.get("image_encodings", ["raw"])
        if not all(type(e) is str for e in offered):
            raise ProtocolError(ErrorCode.MALFORMED, "image_encodings must be an array of str (e.g. [\"png\", \"raw\"])", seq)
        images = cameras.negotiate(entry.images, offered)
        session = Session(identity, secrets.token_hex(8), index, seq, now, str(header.get("client", "")), images)
        self.sessions[identity] = session
        welcome = wire.make_header(
            MsgType.WELCOME,
            next(self._seq),
            re=seq,
            bundle=entry.name,
            spec_hash=entry.spec_hash,
            session=session.session_id,
            obs_dim=entry.obs_dim,
            act_dim=entry.act_dim,
            control_hz=entry.control_hz,
            action_kind=entry.action_kind,
            action_low=entry.action_low,
            action_high=entry.action_high,
            observation=entry.observation,
            action=entry.action,
            limits=entry.limits.to_robot_spec(),
            max_message_bytes=self._cap(index),
            protocol=list(wire.SUPPORTED_VERSIONS),
            chunk=entry.chunk_length,
        )
        if images:
            welcome["images"] = [spec.to_wire() for spec in images]
        self._send(identity, wire.encode(welcome))
        self.telemetry.publish("session", {"event": "hello", "session": session.session_id, "bundle": entry.name, "client": session.client})

    def _on_reset(self, identity: bytes, header: dict[str, Any], body: list[bytes], now: int) -> None:
        session = self._session_for(identity, header["seq"], now)
        self.entries[session.policy].policy.reset()
        self._send(identity, wire.encode(wire.make_header(MsgType.RESET, next(self._seq), re=header["seq"])))

    def _on_heartbeat(self, identity: bytes, header: dict[str, Any], body: list[bytes], now: int) -> None:
        session = self._session_for(identity, header["seq"], now)
        stats = header.get("stats")
        if stats:
            self.telemetry.publish("safety", {"session": session.session_id, "client": session.client, "stats": stats})
        self._send(identity, wire.encode(wire.make_header(MsgType.HEARTBEAT, next(self._seq), re=header["seq"])))

    def _on_bye(self, identity: bytes, header: dict[str, Any], body: list[bytes], now: int) -> None:
        session = self.sessions.pop(identity, None)
        self.runner.last_actions.pop(identity, None)
        if session is not None:
            self.telemetry.publish("session", {"event": "bye", "session": session.session_id, "reason": header.get("reason", "")})

    # ------------------------------------------------------------------ housekeeping

    def _expire(self, now: int) -> None:
        limit = now - int(self.config.session_timeout_s * 1e9)
        for identity, session in list(self.sessions.items()):
            if session.last_seen_ns < limit:
                self._forget(identity, "expired")

    def _evict_idlest(self, now: int) -> bool:
        """Forget the longest-silent session if it has been silent crowded_idle_s; whether one was."""
        identity, session = min(self.sessions.items(), key=lambda item: item[1].last_seen_ns)
        if now - session.last_seen_ns < int(self.config.crowded_idle_s * 1e9):
            return False
        self._forget(identity, "evicted")
        return True

    def _forget(self, identity: bytes, event: str) -> None:
        session = self.sessions.pop(identity)
        self.runner.last_actions.pop(identity, None)
        self.telemetry.publish("session", {"event": event, "session": session.session_id})

    def _tick(self, now: int) -> None:
        self._expire(now)
        summary = self.stats.swap()
        summary["sessions"] = len(self.sessions)
        self.telemetry.publish("latency", summary)
        clipped = summary["counts"].get("safety.action_clipped")
        if clipped:
            self.telemetry.publish("safety", {"event": "action_clipped", "count": clipped})
        actions = {}
        for identity, (seq, action) in list(self.runner.last_actions.copy().items()):
            session = self.sessions.get(identity)
            if session is not None:
                actions[session.session_id] = {"seq": seq, "action": action.tolist()}
        if actions:
            self.telemetry.publish("actions", {"last": actions})

