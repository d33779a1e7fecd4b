"""The inference thread: batches every pending step request into one forward pass per bundle.

The I/O thread hands over lists of validated requests through a queue and goes straight back
to its sockets; this thread takes everything queued so far (natural batching: no added wait),
copies the observations into a preallocated array, calls ``infer`` once per bundle and encodes
the replies. Replies go into ``outbox`` (a deque) and one empty "doorbell" frame on an inproc
PAIR wakes the I/O thread, which alone touches the ROUTER socket. One send per batch matters:
every pyzmq send releases the GIL, and each release woke the waiting I/O thread only to make
this thread wait for the GIL again - a ping-pong that cost more than inference itself.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from typing import NamedTuple, Sequence

import msgpack
import numpy as np
import zmq

from bridge import protocol as wire
from bridge.policy import PolicyEntry
from bridge.protocol import ErrorCode
from bridge.telemetry import ServerStats

log = logging.getLogger(__name__)


class StepRequest(NamedTuple):
    identity: bytes
    seq: int
    policy: int  # index into the server's bundle list
    obs: np.ndarray  # float32 (obs_dim,), validated finite
    recv_ns: int
    deadline_ns: int


class InferenceWorker(threading.Thread):
    def __init__(
        self,
        entries: Sequence[PolicyEntry],
        context: zmq.Context,
        results_endpoint: str,
        stats: ServerStats,
        seq_counter: itertools.count,
        max_batch: int = 64,
    ) -> None:
        super().__init__(name="bridge-inference", daemon=True)
        self._entries = list(entries)
        self._context = context
        self._endpoint = results_endpoint
        self._stats = stats
        self._seq = seq_counter
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[list[StepRequest] | None] = queue.SimpleQueue()
        self._buffers = [np.zeros((max_batch, e.obs_dim), dtype=np.float32) for e in self._entries]
        self._descriptors = [[["<f4", [e.act_dim]]] for e in self._entries]
        self.last_actions: dict[bytes, tuple[int, np.ndarray]] = {}  # per controller, for telemetry
        self.outbox: deque[list[bytes]] = deque()  # [identity, header, action] frames, for the I/O thread
        self.failure: BaseException | None = None

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
                self._serve(batch)
                results.send(b"")  # doorbell: the last thing before blocking again (see module doc)
                if stopping:
                    return
        except BaseException as exc:  # reported by the server; it stops instead of hanging
            self.failure = exc
            log.exception("inference thread failed")
            results.send(b"")
        finally:
            results.close(linger=0)

    def _serve(self, batch: list[StepRequest]) -> None:
        if len(batch) <= self._max_batch and all(r.policy == batch[0].policy for r in batch):
            self._forward(batch[0].policy, batch)  # the common case: one bundle
            return
        groups: dict[int, list[StepRequest]] = {}
        for request in batch:
            groups.setdefault(request.policy, []).append(request)
        for index, requests in groups.items():
            for start in range(0, len(requests), self._max_batch):
                self._forward(index, requests[start : start + self._max_batch])

    def _forward(self, index: int, requests: list[StepRequest]) -> None:
        now = time.monotonic_ns()
        live = []
        for request in requests:
            if now > request.deadline_ns:
                self._send_error(request, ErrorCode.DEADLINE_EXPIRED, f"deadline passed {(now - request.deadline_ns) / 1e3:.0f} us before inference")
            else:
                live.append(request)
        if not live:
            return
        n = len(live)
        buffer = self._buffers[index]
        for row, request in enumerate(live):
            buffer[row] = request.obs
        entry = self._entries[index]
        start = time.monotonic_ns()
        try:
            actions = np.asarray(entry.policy.infer(buffer[:n]), dtype=np.float32)
            if actions.shape != (n, entry.act_dim):
                raise ValueError(f"infer returned shape {actions.shape}, expected {(n, entry.act_dim)}")
        except Exception as exc:
            log.exception("bundle %s failed on a batch of %d", entry.name, n)
            for request in live:
                self._send_error(request, ErrorCode.INTERNAL, f"policy failed: {type(exc).__name__}")
            return
        end = time.monotonic_ns()
        infer_us = (end - start) / 1e3
        finite = None
        if not (np.abs(actions) <= 1.0).all():  # one check catches NaN (compares False) and |a| > 1
            finite = np.isfinite(actions).all(axis=1)
            outside = finite & (np.abs(actions) > 1.0).any(axis=1)
            if outside.any():  # a policy must stay in [-1, 1]; clip and report it as a safety event
                np.clip(actions, -1.0, 1.0, out=actions)
                self._stats.count("safety.action_clipped", int(outside.sum()))
        descriptor = self._descriptors[index]
        packb = msgpack.packb
        for row, request in enumerate(live):
            if finite is not None and not finite[row]:
                self._send_error(request, ErrorCode.INTERNAL, "policy produced a non-finite action")
                continue
            sent = time.monotonic_ns()
            header = packb(
                {"v": wire.PROTOCOL_VERSION, "type": "action", "seq": next(self._seq), "re": request.seq, "t_ns": sent,
                 "queue_us": (start - request.recv_ns) / 1e3, "infer_us": infer_us, "batch": n, "arrays": descriptor}
            )
            action = actions[row]
            self.outbox.append([request.identity, header, action.tobytes()])
            self._stats.served((sent - request.recv_ns) / 1e3, infer_us, n)
            self.last_actions[request.identity] = (request.seq, action)  # a row of this batch's own array

    def _send_error(self, request: StepRequest, code: ErrorCode, text: str) -> None:
        self._stats.count(f"errors.{code.name}")
        self.outbox.append([request.identity, *wire.error_frames(code, text, next(self._seq), request.seq)])

