"""`genba view --overlay`: perception's detections drawn on the viewer's frames, through the view camera."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import sim
from genba.viewer.live import LiveView
from genba.viewer.loop import LoopOptions, ViewLoop
from genba.viewer.overlay import PerceptionOverlay
from perception.overlay import BOX_COLOR
from sim.camera import choose_camera, render
from sim.experts import make_expert
from sim.sensors import CameraSensor

REPO = Path(__file__).resolve().parents[1]
CHANGED = 60  # grey levels in some channel: an overlay stroke, not the video codec's noise
NEAR_PART_PX = 8  # a part's box is drawn this close to its projected centre in the 320x240 overview


def view(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genba", "view", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def parts_in_view(steps: int) -> list[tuple[list, list]]:
    """Per control step of `genba view bin-sort --expert` (seed 0), the overview pixels of the parts lying in the tote,
    and of those perception must find: all but the expert's target (the gripper over it hides it from the perception
    camera). Replayed here: the env and the expert are deterministic."""
    env = sim.make_env("bin-sort")
    try:
        base = env.unwrapped
        camera = CameraSensor(choose_camera(env), base.sim, base.robot).model()
        expert = make_expert(env)
        obs, _ = env.reset(seed=0)
        expert.reset()
        floor = base.task.support_z()
        per_step = []
        for _ in range(steps):
            obs, *_ = env.step(expert.act(obs))
            target = base.task.target.name if base.task.target is not None else None
            resting = [p for p in base.task.part_truth() if abs(p["position"][2] - floor - p["size"][2] / 2) < 0.003]
            pixels = {p["name"]: tuple(camera.project(p["position"][None])[0]) for p in resting}
            per_step.append((list(pixels.values()), [uv for name, uv in pixels.items() if name != target]))
        return per_step
    finally:
        env.close()


def test_overlay_marks_the_parts_in_the_recorded_video(tmp_path):
    plain, marked = tmp_path / "plain.mp4", tmp_path / "overlay.mp4"
    runs = [view("bin-sort", "--expert", "--record", str(path), "--seconds", "1", *extra, "--json", str(path.with_suffix(".json")))
            for path, extra in ((plain, ()), (marked, ("--overlay",)))]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert json.loads(marked.with_suffix(".json").read_text())["overlay"] == "infeed"

    a, b = read_video(plain), read_video(marked)
    assert len(a) == len(b) == 20
    parts = parts_in_view(20)
    assert all(len(findable) >= 2 for _, findable in parts), parts  # two parts lie untouched in the tote throughout
    for i, (frame_a, frame_b, (resting, findable)) in enumerate(zip(a, b, parts)):
        changed = np.abs(frame_a.astype(np.int16) - frame_b.astype(np.int16)).max(axis=2) > CHANGED
        vs, us = np.nonzero(changed)
        assert len(us) > 0, f"frame {i}: the overlay drew nothing"
        for u, v in findable:  # the box around each part lying in the tote
            near = (np.abs(us - u) <= NEAR_PART_PX) & (np.abs(vs - v) <= NEAR_PART_PX)
            assert near.any(), f"frame {i}: nothing drawn around the part at pixel ({u:.0f}, {v:.0f})"
        # Everything drawn belongs to a part: its box and axes, or its label (up to ~110 px to the right, above the box).
        owned = np.zeros_like(changed)
        for u, v in resting:
            owned[max(0, int(v) - 30):int(v) + 15, max(0, int(u) - 15):int(u) + 115] = True
        outside = changed & ~owned
        assert outside.sum() <= 0.02 * changed.sum(), f"frame {i}: {outside.sum()} changed pixels away from every part"


@pytest.fixture(scope="module")
def bin_sort():
    env = sim.make_env("bin-sort")
    env.reset(seed=3)
    yield env
    env.close()


def test_overlay_returns_a_copy_and_leaves_the_frame_and_the_env_as_they_were(bin_sort):
    base = bin_sort.unwrapped
    camera = choose_camera(bin_sort)
    overlay = PerceptionOverlay(bin_sort, camera)
    frame = render(bin_sort, camera)
    before = frame.copy()
    due = {name: sensor.due() for name, sensor in base.sensors.items()}
    drawn = overlay(frame)
    np.testing.assert_array_equal(frame, before)  # the input is untouched
    assert drawn is not frame and drawn.shape == frame.shape
    assert {name: sensor.due() for name, sensor in base.sensors.items()} == due  # the env's cameras keep their schedule
    # It found the three parts lying in the tote, with their classes, and drew each one's box in the view.
    truth = sorted(p["type"] for p in base.task.part_truth())
    assert sorted(d.class_name for d in overlay.detections) == truth
    assert np.all(drawn == BOX_COLOR, axis=2).sum() > 3 * 20  # three yellow boxes' outlines


def test_the_live_page_shows_the_overlay():
    """A paused loop on the live page: the frame the page serves carries the boxes; the plain render of that state does not."""
    env = sim.make_env("bin-sort", render_mode="rgb_array")
    camera = choose_camera(env)
    with LiveView(port=0, fps=20.0) as page:
        page.command("pause")
        loop = ViewLoop(env, make_expert(env), camera, view=page, options=LoopOptions(episodes=None, seconds=1.0, speed=0.0),
                        decorate=PerceptionOverlay(env, camera))
        runner = threading.Thread(target=loop.run, daemon=True)
        runner.start()
        try:
            with urllib.request.urlopen(page.url + "frame.jpg", timeout=10) as response:  # waits for the loop to render one
                served = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            assert loop.summary.steps == 0  # still the state the loop reset to
        finally:
            page.command("resume")
            runner.join(30)
    try:
        assert not runner.is_alive()
        env.reset(seed=0)  # the state the page showed: the loop's first reset, before any step
        plain = render(env, camera)
        view_model = CameraSensor(camera, env.unwrapped.sim, env.unwrapped.robot).model()
        centres = [view_model.project(p["position"][None])[0] for p in env.unwrapped.task.part_truth()]
        assert len(centres) == 3
        changed = np.abs(served.astype(np.int16) - plain.astype(np.int16)).max(axis=2) > CHANGED
        vs, us = np.nonzero(changed)
        for u, v in centres:  # a box drawn around each part (JPEG blurs the 1-pixel lines, not where they are)
            assert ((np.abs(us - u) <= NEAR_PART_PX) & (np.abs(vs - v) <= NEAR_PART_PX)).any(), (u, v)
    finally:
        env.close()


def test_a_cell_without_a_perception_camera_is_refused_by_name(tmp_path):
    video = tmp_path / "reach.mp4"
    proc = view("reach", "--expert", "--record", str(video), "--overlay", "--seconds", "0.2")
    assert proc.returncode == 1
    assert "--overlay needs a camera with `use: [perception]` in scenario 'reach'" in proc.stderr
    assert "overview" in proc.stderr  # its cameras are listed
    assert not video.exists()


def test_overlay_needs_frames_to_draw_on():
    proc = view("bin-sort", "--expert", "--gui", "--overlay")
    assert proc.returncode == 1
    assert "--overlay draws on the frames of --record or --web" in proc.stderr
