"""The cell PC beside the emulated controller: a ZeroMQ REP endpoint for sensing and the test harness.

HSES carries the arm only. A real cell also has a PC with a camera and perception that knows the parts,
the gripper's state and the episode's outcome; this channel stands for it (msgpack maps, one reply per
request, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a bad request never stops it):

- ``{"op": "describe"}``: the cell's feature_spec() (observation layout, action scales, control rate, robot);
- ``{"op": "reset", "seed": S}``: start an episode as ``env.reset(seed=S)`` (gripper output cleared);
- ``{"op": "sense"}``: ``task`` (the env's task features, plus the goals of a goal task), ``gripper_opening``
  (m), ``tool_velocity`` (m/s, world; HSES has no velocity read), ``step``, ``done``, ``success``, ``cycle_time`` (s, None until a part is done);
- ``{"op": "fault", "kind": K, ...}``: the harness plays the pendant or the cable: ``servo_off``,
  ``alarm`` (``code``), ``outage`` (``seconds``), ``drop_rate`` (``rate``).

The robot's own joints and tool pose are not here: the adapter reads them over HSES.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgpack
import zmq

from bridge.endpoints import is_loopback_host
from genba.hses.emulator import EmulatorError, Faults, HsesEmulator
from genba.hses.motion import GRIPPER_GROUP

log = logging.getLogger("genba.hses")
POLL_MS = 100  # how often the thread looks at its stop flag
MAX_REQUEST_BYTES = 4096


class CellChannelError(Exception):
    """A request the channel cannot serve; its text goes back to the caller."""


class CellChannel:
    """Serves the emulator's cell on ``endpoint`` (tcp, loopback unless ``allow_remote``) from its own thread."""

    def __init__(self, emulator: HsesEmulator, endpoint: str, allow_remote: bool = False) -> None:
        host = endpoint.rpartition("//")[2].rpartition(":")[0].strip("[]")
        if not endpoint.startswith("tcp://") or not host:
            raise EmulatorError(f"--cell-bind {endpoint!r}: expected tcp://HOST:PORT")
        if not is_loopback_host(host) and not allow_remote:
            raise EmulatorError(f"--cell-bind {endpoint}: loopback only unless --allow-remote")
        self.emulator = emulator
        self.requests = 0
        self.errors = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.linger = 0
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._context.destroy(linger=0)
            raise EmulatorError(f"cannot bind the cell channel on {endpoint}: {exc}") from None
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hses-cell-channel", daemon=True)

    def start(self) -> CellChannel:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._context.destroy(linger=0)

    def __enter__(self) -> CellChannel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(POLL_MS):
                continue
            # All of the request's frames: REP refuses to send a reply (EFSM, which ended this thread) while a
            # frame of the request is still unread.
            frames = self._socket.recv_multipart()
            self.requests += 1
            try:
                if len(frames) != 1:
                    raise CellChannelError(f"a request is one msgpack frame, got {len(frames)} frames")
                reply = {"ok": True, **self.answer(_decode(frames[0]))}
            except CellChannelError as exc:
                self.errors += 1
                reply = {"ok": False, "error": str(exc)}
            except Exception as exc:  # a bug costs one request, not the channel
                log.exception("cell channel request failed")
                self.errors += 1
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            self._socket.send(msgpack.packb(reply, use_bin_type=True))

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        emu, op = self.emulator, request.get("op")
        motion = emu.motion
        if op == "describe":
            with emu.lock:
                return {"spec": motion.env.unwrapped.feature_spec()}
        if op == "reset":
            seed = request.get("seed")
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise CellChannelError(f"reset: 'seed' must be a non-negative integer, got {seed!r}")
            with emu.lock:
                emu.controller.state.io.pop(GRIPPER_GROUP, None)
                motion.reset_episode(seed)
                emu.realign()
            return {}
        if op == "sense":
            with emu.lock:
                episode = motion.episode
                reading = motion.robot.reading
                return {"task": motion.task_features(), "gripper_opening": float(reading.opening),
                        "tool_velocity": [float(v) for v in reading.tool_vel],
                        "step": episode.steps, "done": episode.done, "success": bool(episode.info.get("is_success", False)),
                        "cycle_time": episode.info.get("cycle_time")}
        if op == "fault":
            return self._fault(request)
        raise CellChannelError(f"op {op!r}: use describe, reset, sense or fault")

    def _fault(self, request: dict[str, Any]) -> dict[str, Any]:
        emu, kind = self.emulator, request.get("kind")
        if kind == "servo_off":
            emu.servo_off()
        elif kind == "alarm":
            code = request.get("code", 4107)
            if not isinstance(code, int) or not 0 < code < 2**32:
                raise CellChannelError(f"fault alarm: 'code' must be a positive integer, got {code!r}")
            emu.raise_alarm(code)
        elif kind == "outage":
            seconds = request.get("seconds")
            if not isinstance(seconds, (int, float)) or not 0 < seconds <= 60:
                raise CellChannelError(f"fault outage: 'seconds' must be in (0, 60], got {seconds!r}")
            emu.outage(float(seconds))
        elif kind == "drop_rate":
            rate = request.get("rate")
            if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise CellChannelError(f"fault drop_rate: 'rate' must be in [0, 1], got {rate!r}")
            emu.faults = Faults(float(rate), emu.faults.seed)
        else:
            raise CellChannelError(f"fault kind {kind!r}: use servo_off, alarm, outage or drop_rate")
        return {}


def _decode(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_REQUEST_BYTES:
        raise CellChannelError(f"request of {len(raw)} bytes: at most {MAX_REQUEST_BYTES}")
    try:
        request = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise CellChannelError(f"request is not msgpack: {exc}") from None
    if not isinstance(request, dict):
        raise CellChannelError(f"request must be a map with 'op', got {type(request).__name__}")
    return request
