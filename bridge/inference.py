"""Forward passes for batches of step requests, run inline on the I/O thread or on a worker thread.

``BatchRunner`` takes a list of validated requests, copies the observations into a preallocated
array, calls ``infer`` once per bundle (one forward pass for every request that was ready) and
hands each reply to a sink. The server uses it in one of two modes (see bridge/server.py):

- inline: the I/O thread runs the batch itself and sends the replies at once. For a CPU MLP
  the forward pass takes a few to tens of microseconds, less than a handoff to another thread
  costs (queue, GIL hand-over, doorbell, wake-up: ~0.1-0.4 ms measured on 2 cores: docs/benchmarks.md).
- thread: ``InferenceWorker`` runs batches on its own thread, so a slow model (GPU, a large
  network, a policy that may stall) never holds up the sockets. The I/O thread hands over lists
  of requests through a queue; this thread takes everything queued so far (natural batching: no
  added wait) and puts the replies into ``outbox`` (a deque); one empty "doorbell" frame on an
  inproc PAIR wakes the I/O thread, which alone touches the ROUTER socket. One doorbell per batch
  matters: every pyzmq send releases the GIL, and each release woke the waiting I/O thread only
  to make this thread wait for the GIL again - a ping-pong that cost more than inference itself.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Sequence

import numpy as np
import zmq

from bridge import protocol as wire
from bridge.policy import PolicyEntry
from bridge.protocol import ErrorCode
from bridge.telemetry import ServerStats

log = logging.getLogger(__name__)

ReplySink = Callable[[bytes, list], None]  # (identity, frames) -> None


class StepRequest(NamedTuple):
    identity: bytes
    seq: int
    policy: int  # index into the server's bundle list
    obs: bytes | np.ndarray  # the observation frame: float32 (obs_dim,), validated finite
    recv_ns: int
    deadline_ns: int
    chunk: int = 0  # actions asked for: 0 a single action (1-D reply), n >= 1 a chunk of at most n rows (2-D)
    obs_t_ns: int = 0  # when the controller took the observation (its clock): the chunk's start
    age_us: float = 0.0  # the observation's age when the step was sent: (t_ns - obs_t_ns) / 1000, both controller clock
    images: dict[str, np.ndarray] | None = None  # a pixel bundle's frames, decoded and checked: key -> uint8 (H, W, C)


# A chunk reply's header: the general encoder (chunks are asked for once per several control periods,
# so the fixed layout's ~2 us matter less than one layout per chunk size).
_ACTION = wire.MsgType.ACTION.value


class BatchRunner:
    """Runs batches of step requests and hands each reply (or typed error) to ``reply``.

    A pixel bundle's frames (decoded and checked by the server) are copied into one buffer per camera,
    row by row like the observations, so the policy gets (n, obs_dim) and {key: (n, H, W, C)}.

    Used by one thread at a time: the I/O thread (inline mode) or the worker (thread mode).
    ``slow_forwards`` counts forward passes longer than ``budget_ns``; the server watches it.
    """

    def __init__(
        self,
        entries: Sequence[PolicyEntry],
        stats: ServerStats,
        seq_counter: itertools.count,
        reply: ReplySink,
        max_batch: int = 64,
        budget_ns: int = 200_000,
    ) -> None:
        self._entries = list(entries)
        self._stats = stats
        self._seq = seq_counter
        self._max_batch = max_batch
        self.reply = reply
        self.budget_ns = budget_ns
        self.forwards = 0
        self.slow_forwards = 0
        self._buffers = [np.zeros((max_batch, e.obs_dim), dtype=np.float32) for e in self._entries]
        # Byte views of the same buffers: an observation frame is copied in without a numpy temporary.
        self._rows = [memoryview(b).cast("B") for b in self._buffers]
        self._row_bytes = [e.obs_dim * 4 for e in self._entries]
        self._action_layouts = [wire.action_header_layout(e.act_dim) for e in self._entries]
        self._widths = [e.act_dim * e.chunk_length for e in self._entries]
        # Observations reach the runner validated (float32, shape, finite), so a bundle's unchecked
        # entry point is safe here and skips checks that cost as much as the forward pass itself.
        self._forward_fns = [getattr(e.policy, "act_batch_unchecked", None) or e.policy.act for e in self._entries]
        # A pixel bundle's frames are stacked per camera into these (None: a bundle without image inputs).
        self._image_buffers = [{s.key: np.zeros((max_batch, *s.shape), dtype=np.uint8) for s in e.images} if e.images else None
                               for e in self._entries]
        self.last_actions: dict[bytes, tuple[int, np.ndarray]] = {}  # per controller, for telemetry

    def serve(self, batch: list[StepRequest]) -> None:
        if len(batch) == 1 or len(batch) <= self._max_batch and all(r.policy == batch[0].policy for r in batch):
            self._forward(batch[0].policy, batch)  # the common case: one bundle
            return
        groups: dict[int, list[StepRequest]] = {}
        for request in batch:
            groups.setdefault(request.policy, []).append(request)
        for index, requests in groups.items():
            for start in range(0, len(requests), self._max_batch):
                self._forward(index, requests[start : start + self._max_batch])

    def infer(self, index: int, n: int) -> np.ndarray:
        """The bundle's actions for the first n rows of its buffers (also used to time a bundle)."""
        images = self._image_buffers[index]
        if images is None:
            actions = self._forward_fns[index](self._buffers[index][:n])
        else:  # one forward pass for the batch: the vectors (n, obs_dim) and per camera (n, H, W, C)
            actions = self._forward_fns[index](self._buffers[index][:n], {key: frames[:n] for key, frames in images.items()})
        if type(actions) is not np.ndarray or actions.dtype != np.float32:
            actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (n, self._widths[index]):
            raise ValueError(f"infer returned shape {actions.shape}, expected {(n, self._widths[index])}")
        return actions

    def _forward(self, index: int, requests: list[StepRequest]) -> None:
        now = time.monotonic_ns()
        live = [request for request in requests if request.deadline_ns >= now]
        if len(live) < len(requests):
            for request in requests:
                if request.deadline_ns < now:
                    self._send_error(request, ErrorCode.DEADLINE_EXPIRED, f"deadline passed {(now - request.deadline_ns) / 1e3:.0f} us before inference")
            if not live:
                return
        n = len(live)
        rows, size = self._rows[index], self._row_bytes[index]
        for row, request in enumerate(live):
            rows[row * size : (row + 1) * size] = request.obs
        images = self._image_buffers[index]
        if images is not None:
            for key, frames in images.items():
                for row, request in enumerate(live):
                    frames[row] = request.images[key]
        entry = self._entries[index]
        start = time.monotonic_ns()
        try:
            actions = self.infer(index, n)
        except Exception as exc:
            log.exception("bundle %s failed on a batch of %d", entry.name, n)
            for request in live:
                self._send_error(request, ErrorCode.INTERNAL, f"policy failed: {type(exc).__name__}")
            return
        end = time.monotonic_ns()
        self.forwards += 1
        if end - start > self.budget_ns:
            self.slow_forwards += 1
        infer_us = (end - start) / 1e3
        finite = None
        # In Python floats: numpy's reductions cost several microseconds on arrays this small. NaN fails the test too.
        if not all(-1.0 <= a <= 1.0 for row in actions.tolist() for a in row):
            finite = np.isfinite(actions).all(axis=1)
            outside = finite & (np.abs(actions) > 1.0).any(axis=1)
            if outside.any():  # a policy must stay in [-1, 1]; clip and report it as a safety event
                np.clip(actions, -1.0, 1.0, out=actions)
                self._stats.count("safety.action_clipped", int(outside.sum()))
        pack_header, served, last_actions = self._action_layouts[index].pack, self._stats.served, self.last_actions
        reply, sent_at = self.reply, []
        for row, request in enumerate(live):
            if finite is not None and not finite[row]:
                self._send_error(request, ErrorCode.INTERNAL, "policy produced a non-finite action")
                continue
            sent = time.monotonic_ns()
            if request.chunk:
                reply(request.identity, self._chunk_frames(entry, request, actions[row], sent, start, infer_us, n))
            else:
                # seq, re, t_ns, queue_us, infer_us, batch (wire.action_header_layout); a chunked bundle's
                # first action is the one for this control period: what a single-action controller gets.
                header = pack_header(next(self._seq), request.seq, sent, (start - request.recv_ns) / 1e3, infer_us, n)
                reply(request.identity, [header, actions[row, :entry.act_dim].tobytes()])
            sent_at.append((row, request, sent))
        # Replies first, book-keeping after: over 7 rounds of 10 s with two servers served on
        # alternate ticks, this order was faster in 6 (p50 by 15 us on average).
        for row, request, sent in sent_at:
            served((sent - request.recv_ns) / 1e3, infer_us, n)
            last_actions[request.identity] = (request.seq, actions[row, :entry.act_dim])  # a view of this batch's own array

    def _chunk_frames(self, entry: PolicyEntry, request: StepRequest, row: np.ndarray, sent: int, start: int,
                      infer_us: float, n: int) -> list[bytes]:
        """An action reply carrying the chunk: at most request.chunk rows of act_dim, row i for period i after the observation."""
        rows = min(request.chunk, entry.chunk_length)
        chunk = row.reshape(entry.chunk_length, entry.act_dim)[:rows]
        queue_us = (start - request.recv_ns) / 1e3
        header = {"v": wire.PROTOCOL_VERSION, "type": _ACTION, "seq": next(self._seq), "re": request.seq, "t_ns": sent,
                  "queue_us": queue_us, "infer_us": infer_us, "batch": n, "chunk_start_ns": request.obs_t_ns,
                  "period_us": 1e6 / entry.control_hz,
                  # What the server can tell of the observation's age: controller-side age at sending (both
                  # stamps on the controller's clock) plus the time queued here; the network's share is not known.
                  "obs_age_us": request.age_us + queue_us}
        return wire.encode(header, [chunk])

    def _send_error(self, request: StepRequest, code: ErrorCode, text: str) -> None:
        self._stats.count(f"errors.{code.name}")
        self.reply(request.identity, wire.error_frames(code, text, next(self._seq), request.seq))


class InferenceWorker(threading.Thread):
    """Thread mode: runs the batches the I/O thread submits; replies go to ``outbox`` + a doorbell."""

    def __init__(self, runner: BatchRunner, context: zmq.Context, results_endpoint: str) -> None:
        super().__init__(name="bridge-inference", daemon=True)
        self._runner = runner
        self._context = context
        self._endpoint = results_endpoint
        self._queue: queue.SimpleQueue[list[StepRequest] | None] = queue.SimpleQueue()
        self.outbox: deque[tuple[bytes, list]] = deque()  # (identity, frames), for the I/O thread
        self.failure: BaseException | None = None
        runner.reply = lambda identity, frames: self.outbox.append((identity, frames))

    def submit(self, requests: list[StepRequest]) -> None:
        self._queue.put(requests)

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        results = self._context.socket(zmq.PAIR)
        results.linger = 0
        results.connect(self._endpoint)
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                stopping = False
                while True:  # take everything that queued up while the last batch ran
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch = batch + more
                self._runner.serve(batch)
                results.send(b"")  # doorbell: the last thing before blocking again (see module doc)
                if stopping:
                    return
        except BaseException as exc:  # reported by the server; it stops instead of hanging
            self.failure = exc
            log.exception("inference thread failed")
            results.send(b"")
        finally:
            results.close(linger=0)
