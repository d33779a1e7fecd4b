"""`genba bridge twin --web`: the viewer's live page on a bridge session (real server, twin and HTTP)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from twin_support import ENV, ROOT, bridge_server, untrained_reach_bundle


@pytest.fixture(scope="module")
def reach_bundle(tmp_path_factory):
    """Only the plumbing matters here, and episodes must last (a skilled policy ends them in a few
    steps, before the test has paused, resumed and reset one)."""
    return untrained_reach_bundle(tmp_path_factory.mktemp("reach-web"))


@pytest.fixture
def server(reach_bundle):
    with bridge_server(reach_bundle) as endpoint:
        yield endpoint


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)


def _wait_for_url(lines: queue.Queue, seen: list[str], timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if line.startswith("live view: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no live view URL on stderr: {''.join(seen)}")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read()


def _status(url: str) -> dict:
    return json.loads(_get(url + "status.json"))


def _position(message: dict) -> tuple[int, int]:
    return message["status"].get("episode", 0), message["status"].get("step", 0)


def _control(url: str, cmd: str) -> None:
    request = urllib.request.Request(url + "control", data=json.dumps({"cmd": cmd}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200


def _until(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_twin_serves_the_live_page_with_latency_and_safety(reach_bundle, server):
    twin = subprocess.Popen(
        [sys.executable, "-m", "genba", "bridge", "twin", "reach", "--connect", server, "--bundle", str(reach_bundle),
         "--web", "--port", "0", "--speed", "1", "--episodes", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
    )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=_lines, args=(twin.stderr, lines), daemon=True)  # a full pipe would block the twin
    reader.start()
    try:
        url = _wait_for_url(lines, seen, timeout=20)
        def stepped():
            message = _status(url)
            return message if message["status"].get("step", 0) > 0 else None

        first = _until(stepped, 5, "a control step")
        s = first["status"]
        assert s["round_trip_ms"] > 0 and s["round_trip_p99_ms"] > 0
        assert s["deadline_misses"] == 0 and s["holds"] == 0 and isinstance(s["safety_interventions"], int)
        assert len(s["action"]) == 5 and s["joint_positions"]  # the page plots these
        _until(lambda: _position(_status(url)) > _position(first), 2, "the step counter to advance")

        # Pause freezes the cell; a snapshot is still rendered for whoever asks.
        _control(url, "pause")
        time.sleep(0.1)  # let a step in flight finish
        held = _status(url)
        assert held["paused"]
        assert _get(url + "frame.jpg")[:2] == b"\xff\xd8"  # JPEG
        time.sleep(0.4)
        assert _position(_status(url)) == _position(held)
        _control(url, "resume")
        _until(lambda: _position(_status(url)) > _position(held), 2, "the twin to resume")

        # Reset ends the episode now: the next one starts from step 0.
        episode = _position(_status(url))[0]
        _control(url, "reset")
        _until(lambda: _position(_status(url))[0] > episode, 2, "the next episode")

        assert twin.wait(timeout=15) == 0, "".join(seen)
        reader.join(5)  # stderr is at its end: every line is queued
        log = "".join(seen) + "".join(lines.queue)
        assert "over 2 episodes" in twin.stdout.read()
        assert f"episode {episode - 1}: reset from the live view" in log
    finally:
        twin.kill()
        twin.wait(10)
