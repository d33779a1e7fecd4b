"""`genba calibrate` end to end: in the sim against the simulator's own camera, from a recorded MP4, and on bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb
import pytest
from typer.testing import CliRunner

from genba.cli import app
from perception.calibration import Checkerboard, load_calibration
from sim import make_env
from sim.errors import SimError
from sim.props.checkerboard import CheckerboardProp, held_pose, lying_flat, photograph
from sim.sensors import depth_metres

REPO = Path(__file__).resolve().parents[1]
BOARD = Checkerboard(9, 6, 0.025)  # the verb's default board
VIDEO_FRAMES = 24


def calibrate(*args: str) -> dict:
    """Run `genba calibrate ARGS --json PATH` in-process and return the figures it wrote."""
    figures = Path(args[args.index("--json") + 1])
    result = CliRunner().invoke(app, ["calibrate", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(figures.read_text())


# ---------------------------------------------------------------------- sim mode


@pytest.mark.parametrize("scenario, camera", [("conveyor-pick", "pick_zone_hd"), ("bin-sort", "infeed")])
def test_sim_calibration_finds_the_simulators_camera(tmp_path, scenario, camera):
    """Intrinsics from 30 tilted views, the pose from the board lying on the belt / in the tote, both near the truth."""
    figures = calibrate(scenario, "--views", "30", "--json", str(tmp_path / "figures.json"), "--out", str(tmp_path / "calib.json"))
    assert figures["camera"] == camera  # the scenario's first `use: perception` camera
    assert len(figures["views_used"]) >= 28  # the board was whole in (nearly) every view
    errors = figures["errors"]
    assert abs(errors["fx_pct"]) < 1.0 and abs(errors["fy_pct"]) < 1.0, errors
    assert errors["position_mm"] < 5.0, errors
    assert errors["principal_point_px"] < 3.0 and errors["rms_px"] < 0.3 and errors["rotation_deg"] < 1.0, errors
    found, truth = figures["found"], figures["truth"]
    assert found["fx"] == pytest.approx(truth["fx"], rel=0.01)
    assert np.linalg.norm(np.subtract(found["position"], truth["position"])) * 1000 == pytest.approx(errors["position_mm"])
    # --out is OpenCV's convention (world -> camera), the camera the figures describe.
    saved, rms = load_calibration(tmp_path / "calib.json")
    assert rms == figures["rms_px"] and (saved.width, saved.height) == (truth["width"], truth["height"])
    np.testing.assert_allclose(saved.position, found["position"], atol=1e-9)
    np.testing.assert_allclose(saved.K, [[found["fx"], 0, found["cx"]], [0, found["fy"], found["cy"]], [0, 0, 1]])


def test_the_board_prop_reads_back_its_pose_and_leaves_the_cell_as_it_was():
    env = make_env("conveyor-pick", visual_detail="low")
    try:
        cell = env.unwrapped
        bodies = pb.getNumBodies(physicsClientId=cell.sim.cid)
        prop = CheckerboardProp(cell.sim, BOARD)
        R, t = lying_flat(BOARD, (0.5, -0.3, 0.101), yaw=0.4)
        prop.place(R, t)
        got_R, got_t = prop.board_pose()
        np.testing.assert_allclose(got_R, R, atol=1e-6)
        np.testing.assert_allclose(got_t, t, atol=1e-6)
        assert R[2, 2] == pytest.approx(-1.0)  # face up: the board's z points down, into the belt
        cell.sim.step()  # visual only: it neither falls nor pushes anything
        np.testing.assert_allclose(prop.board_pose()[1], t, atol=1e-9)
        prop.remove()
        with pytest.raises(SimError, match="removed"):
            prop.board_pose()
        assert pb.getNumBodies(physicsClientId=cell.sim.cid) == bodies
        cell.reset(seed=0)  # Bullet restores the saved state only into the bodies it saved
    finally:
        env.close()


# ---------------------------------------------------------------------- real mode


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """An MP4 (mp4v) of the board at VIDEO_FRAMES tilted poses, one a frame, through conveyor-pick's perception camera."""
    path = tmp_path_factory.mktemp("video") / "board.mp4"
    env = make_env("conveyor-pick", visual_detail="low")
    try:
        cell = env.unwrapped
        sensor = cell.sensors["pick_zone_hd"]
        camera, config = sensor.model(), sensor.config
        scene = depth_metres(cell.sim.render_image(camera, config.near, config.far)[1], config.near, config.far)
        prop = CheckerboardProp(cell.sim, BOARD)
        rng = np.random.default_rng(1)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (camera.width, camera.height))
        for i in range(VIDEO_FRAMES):
            side = 2 * math.pi * i / VIDEO_FRAMES
            prop.place(*held_pose(camera, BOARD, prop.outline, scene, rng, tilt_axis=(side, side + 2 * math.pi / VIDEO_FRAMES)))
            writer.write(cv2.cvtColor(photograph(cell.sim, camera, config.near, config.far), cv2.COLOR_RGB2BGR))
        writer.release()
    finally:
        env.close()
    return path, camera


def test_real_mode_calibrates_from_a_recorded_mp4(tmp_path, recording):
    path, truth = recording
    figures = calibrate("--source", str(path), "--board", "9x6", "--square", "0.025", "--every", "1",
                        "--json", str(tmp_path / "figures.json"), "--out", str(tmp_path / "calib.json"))
    assert figures["frames_read"] == VIDEO_FRAMES and figures["frames_with_board"] >= VIDEO_FRAMES - 2
    found = figures["found"]
    assert found["fx"] == pytest.approx(truth.fx, rel=0.02) and found["fy"] == pytest.approx(truth.fy, rel=0.02)  # a lossy codec
    assert abs(found["cx"] - truth.cx) < 4 and abs(found["cy"] - truth.cy) < 4
    saved, rms = load_calibration(tmp_path / "calib.json")
    assert rms == figures["rms_px"] and saved.fx == found["fx"]
    np.testing.assert_array_equal(saved.R, np.eye(3))  # no pose step in real mode
    np.testing.assert_array_equal(saved.t, np.zeros(3))


def test_real_mode_keeps_every_nth_frame_with_the_board_and_stops_at_max_views(tmp_path, recording):
    path, _ = recording
    figures = calibrate("--source", str(path), "--every", "3", "--max-views", "4", "--json", str(tmp_path / "f.json"))
    assert figures["views"] == 4 and figures["every"] == 3
    assert figures["frames_with_board"] == 10  # kept the 1st, 4th, 7th and 10th: no frame read after that
    assert figures["frames_read"] < VIDEO_FRAMES


# ---------------------------------------------------------------------- bad input


def write_blank_video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for _ in range(5):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    return path


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    cases = [
        (["conveyor-pick", "--camera", "pick_zone_hdd"],
         "scenario 'conveyor-pick' has no camera 'pick_zone_hdd'; cameras: overview, pick_zone, wrist, pick_zone_hd"),
        (["--source", str(tmp_path / "missing.mp4")], "no video file at"),
        (["--source", str(tmp_path / "notes.mp4")], "cannot open video file"),
        (["--source", str(write_blank_video(tmp_path / "blank.mp4")), "--every", "1"],
         "the 9x6 checkerboard was not found in any of the 5 frames of video file"),
        (["conveyor-pick", "--board", "9by6"], "--board takes the inner corners as COLSxROWS (e.g. 9x6), got '9by6'"),
        (["conveyor-pick", "--board", "8x6"], "looks the same turned half a turn"),
        (["conveyor-pick", "--source", "0"], "name a SCENARIO"),
        (["--source", "0", "--views", "20"], "--views does not apply with --source"),
        (["--source", "97"], "cannot open camera device 97"),  # OpenCV's backends logged two [ WARN ] lines first
    ]
    # All at once: each is a fresh process that fails fast, so the cores overlap their start-up.
    procs = [(args, message, subprocess.Popen([sys.executable, "-m", "genba", "calibrate", *args], cwd=REPO,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args, message in cases]
    for args, message, proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (args, stderr)
        lines = [line for line in stderr.splitlines() if line.strip() and "pybullet build time" not in line]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, stderr)
