"""LiveView: watch any control loop in a browser, with pause / step / reset.

The server runs aiohttp on its own thread and event loop. The control loop (a sim, a bridge
session) never waits on the network: it hands over its latest frame and status dict and reads the
pending control requests, each a few microseconds under a lock.

    with LiveView(port=8000) as view:           # http://127.0.0.1:8000
        while True:
            c = view.poll()                      # Controls(paused, step, reset)
            ...
            if view.wants_frame():               # someone watches and the fps cap allows it
                frame = render()
            view.push(frame, {"episode": 1, "step": 12, "latency_ms": 3.1})

Frames go out latest-frame-wins: a slow browser gets fewer frames, never a backlog. Status keys the
page does not know are shown generically (a table row per scalar), so a bridge can add latency and
safety counters without touching the page. Every asset is served from this package (no CDN).

Endpoints: `/` page, `/ws` (JSON status as text, JPEG frames as binary; accepts {"cmd": ...}),
`/status.json`, `/frame.jpg`, `POST /control` with {"cmd": "pause" | "resume" | "toggle" | "step" | "reset"}.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from bridge.endpoints import is_loopback_host
from genba.errors import AppError

STATIC = Path(__file__).parent / "static"
COMMANDS = ("pause", "resume", "toggle", "step", "reset")
# A /frame.jpg request keeps frames coming this long, for scripts that poll snapshots without a socket.
SNAPSHOT_DEMAND_S = 2.0


class ViewerError(AppError):
    """The web viewer cannot start (port in use, bad address) or was misused."""


@dataclass(frozen=True)
class Controls:
    """What the viewer asks of the loop: hold still (`paused`), advance one step, start over."""

    paused: bool = False
    step: bool = False
    reset: bool = False


class LiveView:
    def __init__(self, host: str = "127.0.0.1", port: int = 8000, fps: float = 10.0, title: str = "genba",
                 jpeg_quality: int = 80, paused: bool = False, idle_timeout_s: float = 15.0):
        if not fps > 0:
            raise ViewerError(f"viewer fps must be > 0, got {fps}")
        if not 0 <= port <= 65535:
            raise ViewerError(f"port must be 0..65535, got {port}")
        self.host, self.port, self.fps, self.title = host, port, float(fps), title
        # A connection with no request under way (idle keep-alive, or headers never finished) is closed after this: with
        # aiohttp's default (an hour) 200 half-sent requests held 200 sockets. An open /ws is a request under way.
        self.idle_timeout_s = float(idle_timeout_s)
        self.jpeg_quality = int(jpeg_quality)
        self._period = 1.0 / self.fps
        self._lock = threading.Lock()
        # Shared with the loop thread (guarded by _lock).
        self._frame: Optional[np.ndarray] = None
        self._frame_seq = 0
        self._frame_t = -math.inf
        self._status: dict[str, Any] = {}
        self._status_seq = 0
        self._paused = paused
        self._step_requests = 0
        self._reset_requested = False
        self._watchers = 0
        self._fresh_needed = False  # a new watcher has no frame yet
        self._demand_until = -math.inf
        # Server thread only.
        self._jpeg_cache: tuple[int, bytes] = (0, b"")
        self._sockets: set = set()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

    # --- loop side: any thread, never blocks on I/O ----------------------------------------------
    def wants_frame(self, changed: bool = True) -> bool:
        """True when a frame would be seen: someone watches, the fps cap allows it, and the scene
        `changed` since the last frame (or a new watcher has none yet). Render and push only then.

        A True answer books the slot, so the cap counts from when rendering starts, not ends
        (a 50 ms render would otherwise turn a 10 fps cap into 6.7 fps)."""
        now = time.monotonic()
        with self._lock:
            if self._watchers == 0 and now > self._demand_until:
                return False
            if not (changed or self._fresh_needed or self._frame is None):
                return False
            if now - self._frame_t < self._period:
                return False
            self._frame_t = now
            return True

    def push(self, frame: Optional[np.ndarray] = None, status: Optional[dict[str, Any]] = None) -> None:
        """Hand over the latest frame (RGB uint8) and/or status; older ones are simply replaced."""
        with self._lock:
            if frame is not None:
                self._frame = frame
                self._frame_seq += 1
                self._fresh_needed = False
            if status is not None:
                self._status = status
                self._status_seq += 1

    def poll(self) -> Controls:
        """Pending requests; each step or reset click is returned once."""
        with self._lock:
            step = self._step_requests > 0
            if step:
                self._step_requests -= 1
            reset, self._reset_requested = self._reset_requested, False
            return Controls(self._paused, step, reset)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def watchers(self) -> int:
        return self._watchers

    @property
    def frames_pushed(self) -> int:
        return self._frame_seq

    def command(self, cmd: str) -> None:
        """Apply a control request (what the page's buttons send)."""
        if cmd not in COMMANDS:
            raise ViewerError(f"unknown viewer command {cmd!r}; valid: {', '.join(COMMANDS)}")
        with self._lock:
            if cmd == "pause":
                self._paused = True
            elif cmd == "resume":
                self._paused = False
            elif cmd == "toggle":
                self._paused = not self._paused
            elif cmd == "step":
                self._paused = True  # stepping only makes sense while held
                self._step_requests += 1
            else:
                self._reset_requested = True
            self._status_seq += 1  # the page shows the paused state: send it out

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> "LiveView":
        """Listen (port 0 picks a free one; `self.port` then holds it) and return once bound."""
        if self._thread is not None:
            raise ViewerError("the viewer is already started")
        self._thread = threading.Thread(target=self._run, name="genba-liveview", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ViewerError(f"the web viewer did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def close(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop ended on its own
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "LiveView":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- server thread ------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except OSError as exc:
            self._error = ViewerError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; pick another --port (0 = any free port)"
            )
        except BaseException as exc:  # surfaced to start(); never a silent dead server
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._guard], client_max_size=4096)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/status.json", self._status_json)
        app.router.add_get("/frame.jpg", self._frame_jpg)
        app.router.add_post("/control", self._control)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                               keepalive_timeout=self.idle_timeout_s)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _close_sockets(self, _app) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"viewer shutting down")

    # Requests must name this server as their host (blocks DNS rebinding onto a loopback viewer), and
    # a control request from a browser must come from this page (blocks other sites' form posts).
    def _host_ok(self, host_header: str) -> bool:
        if not is_loopback_host(self.host):
            return True
        host = urlsplit(f"//{host_header}").hostname or ""
        return is_loopback_host(host)

    @staticmethod
    def _same_origin(request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == request.host

    @web.middleware
    async def _guard(self, request, handler):
        if not self._host_ok(request.host):
            return web.Response(status=403, text="forbidden host\n")
        if request.method != "GET" and not self._same_origin(request):
            return web.Response(status=403, text="cross-origin request refused\n")
        return await handler(request)

    async def _index(self, request):
        html = (STATIC / "index.html").read_text().replace("{{title}}", _escape(self.title))
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    def _status_message(self) -> str:
        with self._lock:
            status, paused, watchers = self._status, self._paused, self._watchers
        return json.dumps(_jsonable({"type": "status", "paused": paused, "viewers": watchers, "fps_cap": self.fps,
                                     "title": self.title, "status": status}), allow_nan=False)

    def _jpeg(self) -> tuple[int, bytes]:
        """The latest frame as JPEG, encoded once per frame however many clients watch."""
        import cv2

        with self._lock:
            frame, seq = self._frame, self._frame_seq
        if frame is None:
            return 0, b""
        if self._jpeg_cache[0] != seq:
            bgr = np.ascontiguousarray(np.asarray(frame)[:, :, 2::-1], dtype=np.uint8)
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                self._jpeg_cache = (seq, buf.tobytes())
        return self._jpeg_cache

    async def _websocket(self, request):
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        self._sockets.add(ws)
        with self._lock:
            self._watchers += 1
            self._fresh_needed = True
            self._status_seq += 1  # everyone's viewer count changed
        sender = asyncio.ensure_future(self._send_loop(ws))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        self.command(str(json.loads(msg.data).get("cmd")))
                    except (ValueError, AttributeError, ViewerError) as exc:
                        await ws.send_str(json.dumps({"type": "error", "error": str(exc)}))
        finally:
            sender.cancel()
            self._sockets.discard(ws)
            with self._lock:
                self._watchers -= 1
                self._status_seq += 1
        return ws

    async def _send_loop(self, ws) -> None:
        # Each client polls the latest sequence numbers on its own, so a slow one skips frames
        # instead of holding up the others.
        tick = min(self._period / 2, 0.05)
        sent_frame = sent_status = -1
        try:
            while not ws.closed:
                status_seq, frame_seq = self._status_seq, self._frame_seq
                if status_seq != sent_status:
                    await ws.send_str(self._status_message())
                    sent_status = status_seq
                if frame_seq != sent_frame:
                    seq, data = self._jpeg()
                    if data:
                        await ws.send_bytes(data)
                    sent_frame = seq if data else sent_frame
                await asyncio.sleep(tick)
        except (ConnectionError, RuntimeError):  # the client went away mid-send
            pass

    async def _status_json(self, request):
        return web.Response(text=self._status_message(), content_type="application/json")

    async def _frame_jpg(self, request):
        """The next frame (waits up to ~1.5 s for the loop to render one), for scripts and curl."""
        with self._lock:
            self._demand_until = time.monotonic() + SNAPSHOT_DEMAND_S
            self._fresh_needed = True  # a paused loop renders once more for the asker
            before = self._frame_seq
        deadline = time.monotonic() + 1.5
        while self._frame_seq == before and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        _, data = self._jpeg()
        if not data:
            return web.Response(status=503, text="no frame yet\n")
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _control(self, request):
        try:
            body = await request.json()
            self.command(str(body.get("cmd")))
        except (ValueError, AttributeError, ViewerError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"paused": self._paused})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _jsonable(obj: Any) -> Any:
    """numpy values to Python, NaN/inf to None (JSON.parse rejects them)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)
