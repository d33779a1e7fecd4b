"""`genba view --web` end to end: a real subprocess, driven by headless Chromium; and `--gui` without a display."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from scenarios import load_scenario

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/setup-browser.sh); Playwright's own browsers are never downloaded
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000


def _stdout_lines(proc: subprocess.Popen) -> "queue.Queue[str]":
    lines: queue.Queue[str] = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def web_view():
    """`genba view conveyor-pick --web --port 0`; yields (process, url, stdout lines); always stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "genba", "view", "conveyor-pick", "--expert", "--web", "--port", "0", "--fps", "10"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    # A watchdog, so nothing here can hang the suite whatever fails; it outlasts every wait below (a loaded CI
    # machine is slow to start the viewer), so it never ends a run that would have passed.
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        lines = _stdout_lines(proc)
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail("genba view --web printed no URL within 60 s")
        match = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert match, f"unexpected first line: {first!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, match.group(0), lines
    finally:
        _stop(proc)
        watchdog.cancel()
        print(f"genba view exit {proc.returncode}; stderr:\n{proc.stderr.read()}")  # shown when the test failed


def test_browser_sees_the_stream_and_can_pause_and_reset(web_view):
    # The set-up installs both (scripts/test.sh runs .ci/setup-browser.sh): missing ones are a failure, not a skip.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run .ci/setup-browser.sh"
    from playwright import sync_api
    proc, url, lines = web_view

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            page.wait_for_function("window.genba.frames >= 3 && window.genba.status && window.genba.status.step > 0")

            # The stream advances: new frames and later steps.
            f0, s0 = page.evaluate("[window.genba.frames, window.genba.status.step]")
            page.wait_for_function(f"window.genba.frames >= {f0 + 3} && window.genba.status.step > {s0}")
            assert int(page.inner_text("#v-step")) > s0

            # Pause stops it: the state says so and neither steps nor frames move for a second.
            page.click("#pause")
            page.wait_for_function("window.genba.paused === true")
            assert page.inner_text("#v-paused") == "paused" and page.inner_text("#pause") == "Resume"
            time.sleep(0.3)  # let a frame already on the wire land
            f1, s1, e1 = page.evaluate("[window.genba.frames, window.genba.status.step, window.genba.status.episode]")
            time.sleep(1.0)
            assert page.evaluate("[window.genba.frames, window.genba.status.step, window.genba.status.episode]") == [f1, s1, e1]

            # Reset while paused: the next episode at step 0, and a fresh frame of it. (On a loaded machine the
            # first episode may have ended on its own before the pause, so the episode is counted from there.)
            page.click("#reset")
            page.wait_for_function(f"window.genba.status.episode === {e1 + 1} && window.genba.status.step === 0")
            page.wait_for_function(f"window.genba.frames > {f1}")
            assert page.inner_text("#v-episode") == str(e1 + 1) and page.inner_text("#v-step") == "0"
            assert page.inner_text("#extra").count("collisions") == 1  # info fields shown generically

            shot = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
            camera = cv2.imdecode(np.frombuffer(page.locator("#frame").screenshot(), np.uint8), cv2.IMREAD_COLOR)
            natural = page.evaluate("[document.getElementById('frame').naturalWidth, document.getElementById('frame').naturalHeight]")
        finally:
            browser.close()

    assert shot.std() > 20, shot.std()  # a rendered page, not a blank one
    assert camera.std() > 20, camera.std()  # the camera image itself shows the cell
    assert natural == [320, 240]  # the scenario camera's size by default
    _stop(proc)
    assert proc.returncode == 0  # SIGTERM ends the run cleanly, with a summary
    rest = []
    while True:
        try:
            rest.append(lines.get(timeout=2))
        except queue.Empty:
            break
    assert any("steps" in line for line in rest), rest  # the run summary
    assert "Traceback" not in proc.stderr.read()


def test_gui_without_a_display_is_one_line_and_exit_1():
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([sys.executable, "-m", "genba", "view", "reach", "--gui"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("pybullet build time")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "DISPLAY" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_view_refuses_conflicting_flags():
    proc = subprocess.run([sys.executable, "-m", "genba", "view", "reach"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "add --gui, --record PATH or --web" in proc.stderr


def test_gui_opens_and_runs_under_a_virtual_display(tmp_path):
    assert shutil.which("xvfb-run"), "xvfb-run missing: run .ci/setup-browser.sh"
    summary = tmp_path / "gui.json"
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 800x600x24", sys.executable, "-m", "genba", "view", "reach", "--gui",
         "--seconds", "0.4", "--json", str(summary)],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(summary.read_text())
    assert report["steps"] == round(0.4 * load_scenario("reach").physics.control_hz) and report["sim_time_s"] == pytest.approx(0.4)
    assert report["wall_s"] >= 0.35  # paced at real time by default, not as fast as possible
