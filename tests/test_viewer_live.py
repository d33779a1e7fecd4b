"""LiveView over real loopback sockets: status, frames, controls, guards; and the view loop obeying them."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import cv2
import numpy as np
import pytest

from genba.viewer.live import STATIC, Controls, LiveView, ViewerError

TIMEOUT = 10.0


@pytest.fixture
def view():
    with LiveView(port=0, fps=20.0, title="test <cell>") as v:
        yield v


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        return err.code, json.loads(text) if text.startswith("{") else {"text": text}


def test_status_is_served_as_json_with_numpy_and_nan(view):
    view.push(status={"step": np.int64(7), "joint_positions": np.array([0.5, -1.0]), "latency_ms": float("nan")})
    code, body = get(view.url + "status.json")
    msg = json.loads(body)
    assert code == 200 and view.url.startswith("http://127.0.0.1:") and view.port > 0
    assert msg["status"] == {"step": 7, "joint_positions": [0.5, -1.0], "latency_ms": None}
    assert msg["paused"] is False and msg["viewers"] == 0


def test_controls_are_handed_to_the_loop_once_each(view):
    assert view.poll() == Controls(paused=False, step=False, reset=False)
    assert post(view.url + "control", {"cmd": "step"}) == (200, {"paused": True})  # a step holds the loop
    assert post(view.url + "control", {"cmd": "step"})[0] == 200
    assert post(view.url + "control", {"cmd": "reset"})[0] == 200
    assert view.poll() == Controls(paused=True, step=True, reset=True)
    assert view.poll() == Controls(paused=True, step=True, reset=False)  # the second click
    assert view.poll() == Controls(paused=True, step=False, reset=False)
    assert post(view.url + "control", {"cmd": "resume"}) == (200, {"paused": False})
    assert post(view.url + "control", {"cmd": "toggle"}) == (200, {"paused": True})
    code, body = post(view.url + "control", {"cmd": "fly"})
    assert code == 400 and "unknown viewer command 'fly'" in body["error"]


def test_other_sites_and_rebound_hosts_are_refused(view):
    code, _ = post(view.url + "control", {"cmd": "pause"}, headers={"Origin": "http://evil.example"})
    assert code == 403 and not view.paused
    assert get(view.url + "status.json", headers={"Host": "evil.example"})[0] == 403
    assert post(view.url + "control", {"cmd": "pause"}, headers={"Origin": view.url.rstrip("/")})[0] == 200


def test_page_and_assets_are_served_locally(view):
    code, html = get(view.url)
    page = html.decode()
    assert code == 200 and "test &lt;cell&gt;" in page  # the title is escaped
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(r.startswith("/static/") or r.startswith("data:") for r in refs), refs
    for name in ("app.js", "style.css"):
        code, body = get(view.url + "static/" + name)
        assert code == 200 and body == (STATIC / name).read_bytes()
        assert not re.search(rb"https?://", body)  # no CDN, no fonts, nothing off the machine
    assert get(view.url + "static/../live.py")[0] == 404


def test_frames_are_rendered_only_for_watchers_and_at_the_fps_cap(view):
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[:, :16] = (255, 0, 0)
    assert not view.wants_frame()  # nobody watches: the loop must not render

    async def watch():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.ws_connect(view.url + "ws") as ws:
                deadline = time.monotonic() + TIMEOUT
                while not view.wants_frame() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert view.watchers == 1
                view.push(frame, {"step": 1})
                assert not view.wants_frame()  # the cap: 20 fps = one frame per 50 ms
                assert not view.wants_frame(changed=False)
                got_jpeg = None
                while got_jpeg is None:
                    msg = await ws.receive(timeout=TIMEOUT)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got_jpeg = msg.data
                await asyncio.sleep(0.06)
                assert not view.wants_frame(changed=False)  # a still scene is not re-sent
                assert view.wants_frame()  # a changed one is, once the cap allows
                return got_jpeg

    jpeg = asyncio.run(watch())
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (24, 32, 3)
    assert img[12, 4, 2] > 200 and img[12, 28, 2] < 50  # RGB red on the left survives as BGR red
    deadline = time.monotonic() + TIMEOUT
    while view.watchers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.watchers == 0 and not view.wants_frame()


def test_a_busy_loop_is_never_held_up_and_latest_status_wins(view):
    async def watch():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.ws_connect(view.url + "ws") as ws:
                t0 = time.perf_counter()
                for i in range(2000):
                    view.push(status={"step": i})
                push_s = time.perf_counter() - t0
                steps = []
                while not steps or steps[-1] != 1999:
                    msg = await ws.receive(timeout=TIMEOUT)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        steps.append(json.loads(msg.data)["status"].get("step"))
                return push_s, steps

    push_s, steps = asyncio.run(watch())
    assert push_s < 0.5  # 2000 pushes: a lock and an assignment each, no I/O
    assert len(steps) < 100  # the client saw a few snapshots, not a 2000-message backlog


def test_half_sent_requests_are_closed_and_an_open_websocket_is_not():
    """A soak held 200 connections that sent part of their headers for as long as it liked (fds 9 -> 209)."""
    with LiveView(port=0, fps=20.0, idle_timeout_s=0.5) as view:
        half = socket.create_connection(("127.0.0.1", view.port), timeout=TIMEOUT)
        half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished

        async def watch_past_the_timeout():
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
                async with session.ws_connect(view.url + "ws") as ws:
                    await asyncio.sleep(1.5)
                    view.push(np.zeros((8, 8, 3), np.uint8), {"step": 7})
                    while True:
                        msg = await ws.receive(timeout=TIMEOUT)
                        if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["status"].get("step") == 7:
                            return True

        assert asyncio.run(watch_past_the_timeout())
        assert half.recv(100) == b""  # closed by the server (it had been, during the 1.5 s)
        half.close()


def test_a_busy_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ViewerError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            LiveView(port=port).start()


def test_the_view_loop_obeys_pause_step_and_reset(view):
    """A real reach cell, held paused: three step clicks make three steps, reset starts episode 2."""
    import sim
    from genba.viewer.loop import LoopOptions, ViewLoop
    from sim.camera import choose_camera
    from sim.experts import make_expert

    view.command("pause")
    env = sim.make_env("reach", render_mode="rgb_array")
    loop = ViewLoop(env, make_expert(env), choose_camera(env, width=64, height=48), view=view,
                    options=LoopOptions(episodes=None, seconds=1.0, speed=0.0))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(summary=loop.run()), daemon=True)
    runner.start()

    def status_when(pred):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            status = json.loads(get(view.url + "status.json")[1])["status"]
            if pred(status):
                return status
            time.sleep(0.02)
        raise AssertionError(f"status never matched; last: {status}")

    try:
        status_when(lambda s: s.get("step") == 0)
        time.sleep(0.2)
        assert loop.summary.steps == 0  # paused: no step taken
        for _ in range(3):
            view.command("step")
        s = status_when(lambda s: s.get("step") == 3)
        assert len(s["joint_positions"]) == 7 and len(s["action"]) == 5 and s["episode"] == 1
        time.sleep(0.2)
        assert loop.summary.steps == 3
        view.command("reset")
        status_when(lambda s: s.get("episode") == 2 and s.get("step") == 0)
        view.command("resume")
        runner.join(TIMEOUT)
        assert not runner.is_alive()
        assert result["summary"].sim_time_s == pytest.approx(1.0)  # ran on to the time limit once resumed
    finally:
        view.close()  # unblocks nothing the loop waits on, but ends the server before the env goes
        runner.join(TIMEOUT)
        env.close()
