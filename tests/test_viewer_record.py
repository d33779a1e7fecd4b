"""Recorded video: `genba view --record` end to end, the VideoRecorder contract, camera overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from twin_support import untrained_reach_bundle

from scenarios import load_scenario
from sim.video import RecorderError, VideoRecorder

REPO = Path(__file__).resolve().parents[1]


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def test_record_two_seconds_of_the_expert(tmp_path):
    """2 s of conveyor-pick at its 20 Hz control rate: 40 frames of the requested size, robot moving."""
    video, summary = tmp_path / "cell.mp4", tmp_path / "view.json"
    proc = subprocess.run(
        [sys.executable, "-m", "genba", "view", "conveyor-pick", "--expert", "--record", str(video),
         "--seconds", "2", "--width", "256", "--height", "192", "--json", str(summary)],
        cwd=REPO, capture_output=True, text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "40 frames 256x192 at 20 fps" in proc.stdout

    frames, fps = read_video(video)
    assert len(frames) == 40
    assert fps == pytest.approx(20.0)
    assert all(f.shape == (192, 256, 3) for f in frames)
    diffs = [float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))) for a, b in zip(frames, frames[1:])]
    assert sum(d > 0.3 for d in diffs) >= 35, diffs  # nearly every frame shows motion (a still scene: ~0)
    first_last = float(np.mean(np.abs(frames[0].astype(np.int16) - frames[-1].astype(np.int16))))
    assert first_last > 3.0, first_last  # the arm travelled towards the part: a visible change
    assert frames[0].std() > 10  # a rendered scene, not a blank image

    report = json.loads(summary.read_text())
    assert report["frames_recorded"] == 40 and report["steps"] == 40
    assert report["video"] == str(video) and report["frame_size"] == [256, 192]
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was moved into place


def test_recorder_fixes_the_size_on_the_first_frame(tmp_path):
    rec = VideoRecorder(tmp_path / "a.mp4", fps=10)
    rec.add(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(RecorderError, match="frame is 32x48 but the video is 64x48"):
        rec.add(np.zeros((48, 32, 3), np.uint8))
    assert rec.close() == tmp_path / "a.mp4"


def test_recorder_writes_rgb_in_the_right_channel_order(tmp_path):
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220  # RGB red
    with VideoRecorder(tmp_path / "red.mp4", fps=5) as rec:
        for _ in range(3):
            rec.add(red)
    frames, _ = read_video(tmp_path / "red.mp4")
    b, g, r = frames[0].reshape(-1, 3).mean(axis=0)  # OpenCV reads BGR
    assert r > 180 and b < 40 and g < 40


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_an_odd_frame_size_is_padded_to_even_and_keeps_every_pixel(tmp_path, suffix):
    """OpenCV's writers cropped 101x75 frames to 100x74 without a word, and view reported 101x75."""
    frame = np.zeros((75, 101, 3), np.uint8)
    frame[:, -1] = (0, 230, 0)  # the last column green, the last row red (RGB): what a crop loses
    frame[-1, :] = (230, 0, 0)
    with VideoRecorder(tmp_path / f"odd{suffix}", fps=5) as rec:
        for _ in range(3):
            rec.add(frame)
    assert rec.video_size == (102, 76) and rec.size == (101, 75)
    frames, _ = read_video(tmp_path / f"odd{suffix}")
    assert frames[0].shape == (76, 102, 3)
    assert frames[0][5:70, 100:].mean(axis=(0, 1))[1] > 150  # green (BGR) in the last column and its copy
    assert frames[0][74:, 5:95].mean(axis=(0, 1))[2] > 150  # red in the last row and its copy


def test_a_video_fps_the_loop_cannot_give_is_named_with_the_one_it_gets(tmp_path):
    """--video-fps 60 on a 20 Hz cell recorded at 20 fps without a word."""
    proc = subprocess.run(
        [sys.executable, "-m", "genba", "view", "reach", "--record", str(tmp_path / "v.mp4"), "--seconds", "1",
         "--video-fps", "60", "--width", "65", "--height", "48"],
        cwd=REPO, capture_output=True, text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "--video-fps 60: a frame every 1 step(s) of the 20 Hz loop gives 20 fps" in proc.stderr
    assert "episode 1: success" in proc.stderr  # a headless recording says how far it is (it said nothing until the end)
    assert "20 frames 66x48 (frames 65x48, padded to even) at 20 fps" in proc.stdout
    frames, fps = read_video(tmp_path / "v.mp4")
    assert len(frames) == 20 and fps == pytest.approx(20.0) and frames[0].shape == (48, 66, 3)


def test_recorder_publishes_the_file_only_on_close(tmp_path):
    path = tmp_path / "late.mp4"
    rec = VideoRecorder(path, fps=10)
    rec.add(np.full((32, 32, 3), 128, np.uint8))
    assert not path.exists()  # an interrupted run leaves no half-written file under the real name
    rec.close()
    assert path.is_file() and path.stat().st_size > 0


def test_recorder_without_frames_writes_nothing(tmp_path):
    with VideoRecorder(tmp_path / "empty.mp4", fps=10) as rec:
        pass
    assert rec.close() is None and not (tmp_path / "empty.mp4").exists()


def test_a_video_in_a_folder_that_cannot_be_written_is_refused_before_any_frame(tmp_path):
    """OpenCV opened the writer "successfully": eval ran all its episodes, then failed renaming a file never written."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RecorderError, match=r"a-file/v.mp4: cannot write a video there \(a file, not a folder, is in the way\)"):
        VideoRecorder(tmp_path / "a-file" / "v.mp4", fps=10)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            return  # root ignores the mode: the first case stands for both
        with pytest.raises(RecorderError, match=r"locked/v.mp4: cannot write a video there \(Permission denied\)"):
            VideoRecorder(locked / "v.mp4", fps=10)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("path, fps, message", [("x.gif", 10, "unknown video container"), ("x.mp4", 0, "fps must be > 0")])
def test_recorder_refuses_bad_settings(tmp_path, path, fps, message):
    with pytest.raises(RecorderError, match=message):
        VideoRecorder(tmp_path / path, fps=fps)


def test_camera_pose_and_size_are_configurable():
    import sim
    from sim.camera import CameraError, choose_camera, render

    env = sim.make_env("reach", render_mode="rgb_array")
    try:
        env.reset(seed=0)
        default = choose_camera(env)
        turned = choose_camera(env, yaw=default.yaw + 1.2, width=160, height=120)
        a, b = render(env, choose_camera(env, width=160, height=120)), render(env, turned)
        assert a.shape == b.shape == (120, 160, 3)
        assert float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))) > 5  # another viewpoint
        with pytest.raises(CameraError, match="pitch"):
            choose_camera(env, pitch=3.0)
        with pytest.raises(CameraError, match="no camera 'top'"):
            choose_camera(env, "top")
    finally:
        env.close()


def test_view_a_bundle_on_its_own_scenario(tmp_path):
    """--policy BUNDLE without SCENARIO: the bundle's scenario is built and the policy drives it."""
    bundle = untrained_reach_bundle(tmp_path)
    video, summary = tmp_path / "policy.mp4", tmp_path / "view.json"
    proc = subprocess.run(
        [sys.executable, "-m", "genba", "view", "--policy", str(bundle), "--record", str(video), "--seconds", "1",
         "--json", str(summary)],
        cwd=REPO, capture_output=True, text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(summary.read_text())
    assert report["scenario"] == "reach" and report["driver"] == f"bundle: {bundle}"
    hz = load_scenario("reach").physics.control_hz  # one frame per control step, for the 1 s asked
    assert report["steps"] == report["frames_recorded"] == hz
    frames, _ = read_video(video)
    assert len(frames) == hz


def test_policy_and_expert_exclude_each_other(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "genba", "view", "reach", "--expert", "--policy", str(tmp_path),
                           "--web"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "--policy and --expert exclude each other" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "genba", "view", "reach", "--policy", str(tmp_path), "--web"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "not a run directory, snapshot or bundle" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("control_hz, fps, expected", [
    (20.0, None, (1, 20.0)),  # every control step
    (240.0, None, (8, 30.0)),  # capped at 30 fps by default
    (20.0, 10.0, (2, 10.0)),
    (20.0, 15.0, (1, 20.0)),  # 15 fps from 20 Hz would stutter: the nearest whole step count wins
])
def test_recorded_frames_are_evenly_spaced_in_sim_time(control_hz, fps, expected):
    from genba.viewer.loop import record_every_for

    assert record_every_for(control_hz, fps) == expected
