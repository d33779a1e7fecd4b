"""`genba calibrate`: a camera's intrinsics (and, in the sim, its pose) from views of a printed checkerboard.

Sim mode (SCENARIO) runs a line's calibration in the cell and checks it against the simulator's camera;
real mode (--source) takes the frames from any OpenCV VideoCapture source. Both end in perception.calibration,
the code a cell PC runs.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Optional

import typer

from genba.errors import AppError
from genba.jsonfile import json_option, write_json

DEFAULT_VIEWS, DEFAULT_EVERY, DEFAULT_MAX_VIEWS, DEFAULT_SUPERSAMPLE = 15, 10, 30, 4
MAX_SUPERSAMPLE = 16  # K x K full renders per view


class CalibrateError(AppError):
    """Flags that do not fit together, a board that cannot be read or found, a calibration that cannot be made."""


HELP = "\n\n".join([
    "Calibrate a camera from views of a printed checkerboard, as on a real line.",
    "Sim: genba calibrate SCENARIO [--camera NAME] [--views 15]: the board is held up to the camera in random tilted "
    "poses (intrinsics), then laid flat at a surveyed place on the work surface (the camera's pose); prints fx, fy, "
    "principal point, reprojection RMS, camera position and rotation, each with its error against the simulator's camera.",
    "Real: genba calibrate --source SPEC --out calib.json: frames from a camera, a recording or a stream; intrinsics "
    "only, since frames alone do not say where the board lay in the world (no pose step; the file's R, t are the "
    "identity). For the pose, lay the board at a surveyed place and use perception.calibration.camera_pose_from_board.",
])


def register(app: typer.Typer) -> None:
    app.command("calibrate", help=HELP)(calibrate)


def calibrate(
    scenario: Optional[str] = typer.Argument(None, help="sim mode: built-in scenario or YAML path whose camera to calibrate"),
    source: Optional[str] = typer.Option(None, "--source", help="real mode: a camera device index, a video file or a "
                                                                "stream URL (anything OpenCV's VideoCapture opens)"),
    board_spec: str = typer.Option("9x6", "--board", help="inner corners COLSxROWS (one count even, one odd)"),
    square: float = typer.Option(0.025, help="square size (m)"),
    camera: Optional[str] = typer.Option(None, help="sim: scenario camera (default: its first `use: perception` one)"),
    views: Optional[int] = typer.Option(None, help=f"sim: board poses shown to the camera (default {DEFAULT_VIEWS})"),
    seed: int = typer.Option(0, min=0, help="sim: seed of the board poses (and of the camera's noise)"),
    supersample: Optional[int] = typer.Option(None, help="sim: each pixel the mean of KxK rendered samples, as a "
                                                         f"sensor integrates light (default {DEFAULT_SUPERSAMPLE}; "
                                                         "1: the renderer's raw frame)"),
    every: Optional[int] = typer.Option(None, help="--source: keep every N-th frame in which the board is found "
                                                   f"(default {DEFAULT_EVERY})"),
    max_views: Optional[int] = typer.Option(None, "--max-views", help=f"--source: stop after this many kept frames "
                                                                      f"(default {DEFAULT_MAX_VIEWS})"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the calibration: image size, K, dist, R, t (OpenCV "
                                                           "convention, world -> camera) and RMS, as JSON"),
    json_path: Optional[Path] = json_option("write the figures (and, in the sim, the errors) as JSON"),
) -> None:
    """Calibrate a camera from views of a printed checkerboard (the verb's help: HELP)."""
    started = time.perf_counter()
    # FFmpeg logs its own complaints (e.g. "moov atom not found") besides the error we report; OpenCV reads this
    # when it loads, which is below. Set OPENCV_FFMPEG_LOGLEVEL=16 to see them.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    board = _board(board_spec, square)
    if (scenario is None) == (source is None):
        raise CalibrateError("name a SCENARIO (calibrate its camera in the sim) or give --source (a real camera or "
                             "recording), not " + ("both" if scenario else "neither"))
    if source is not None:
        _refuse(("--camera", camera), ("--views", views), ("--supersample", supersample), mode="--source",
                why="they set up the simulated calibration")
        every = _at_least(every, DEFAULT_EVERY, 1, "--every")
        max_views = _at_least(max_views, DEFAULT_MAX_VIEWS, 3, "--max-views")
        figures, found = _from_source(source, board, every, max_views)
    else:
        _refuse(("--every", every), ("--max-views", max_views), mode="a SCENARIO", why="they pick frames of a --source")
        views = _at_least(views, DEFAULT_VIEWS, 3, "--views")
        supersample = _at_least(supersample, DEFAULT_SUPERSAMPLE, 1, "--supersample")
        if supersample > MAX_SUPERSAMPLE:  # K*K renders of the full image per view: 1000 took 24 GB and the OOM killer
            raise CalibrateError(f"--supersample must be <= {MAX_SUPERSAMPLE}, got {supersample}")
        figures, found = _in_sim(scenario, camera, board, views, seed, supersample)
    figures["wall_clock_s"] = time.perf_counter() - started
    for line in _report(figures):
        typer.echo(line)
    if out is not None:
        from perception.calibration import save_calibration  # Imported on use: OpenCV is not needed for --help.

        out.parent.mkdir(parents=True, exist_ok=True)
        save_calibration(out, found, figures["rms_px"])
        typer.echo(f"calibration written to {out}")
    write_json(json_path, figures)


# ---------------------------------------------------------------------- flags


def _board(spec: str, square: float):
    from perception.calibration import Checkerboard  # Imported on use: OpenCV is not needed for --help.

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec)
    if not match:
        raise CalibrateError(f"--board takes the inner corners as COLSxROWS (e.g. 9x6), got {spec!r}")
    return Checkerboard(int(match.group(1)), int(match.group(2)), square)


def _at_least(value: Optional[int], default: int, least: int, flag: str) -> int:
    value = default if value is None else value
    if value < least:
        raise CalibrateError(f"{flag} must be >= {least}, got {value}")
    return value


def _refuse(*given: tuple[str, object], mode: str, why: str) -> None:
    flags = [flag for flag, value in given if value is not None]
    if flags:
        raise CalibrateError(f"{', '.join(flags)} {'does' if len(flags) == 1 else 'do'} not apply with {mode}: {why}")


# ---------------------------------------------------------------------- sim mode


def _in_sim(scenario: str, camera: Optional[str], board, views: int, seed: int, supersample: int):
    # Imported on use: PyBullet loads only for sim mode.
    import numpy as np

    from perception.calibration import calibrate_intrinsics, camera_pose_from_board, find_corners
    from sim import make_env
    from sim.errors import SimError
    from sim.props.checkerboard import CheckerboardProp, board_centre, held_pose, photograph, surveyed_place
    from sim.sensors import depth_metres

    env = make_env(scenario, visual_detail="low")  # the arm's low-detail visuals render several times faster
    try:
        cell = env.unwrapped
        sensor = cell.sensors[_camera_name(cell.scenario, camera)]
        truth, config = sensor.model(), sensor.config
        rng = np.random.default_rng(seed)
        _, buffer, _ = cell.sim.render_image(truth, config.near, config.far)
        scene = depth_metres(buffer, config.near, config.far)  # the cell without the board: what it must stay in front of
        try:
            surface_z = cell.task.support_z()
        except SimError:  # a cell without parts: the board lies on the floor
            surface_z = 0.0

        def shot() -> np.ndarray:
            rgb = photograph(cell.sim, truth, config.near, config.far, supersample)
            if config.noise.rgb_std > 0:  # the camera's own noise, as its sensor adds it
                rgb = np.clip(np.rint(rgb + rng.normal(0.0, config.noise.rgb_std, rgb.shape)), 0, 255).astype(np.uint8)
            return rgb

        what = f"the {board.cols}x{board.rows} board of {board.square * 1000:g} mm squares"
        prop = CheckerboardProp(cell.sim, board)
        try:
            frames = []
            for view in range(views):
                # Tilted towards each side in turn, as a technician is told to: the tilts pin the focal length down.
                side = 2.0 * math.pi * view / views
                pose = held_pose(truth, board, prop.outline, scene, rng, tilt_axis=(side, side + 2.0 * math.pi / views))
                if pose is None:
                    raise CalibrateError(f"camera {sensor.name!r} sees {what} whole, in front of the cell, in none of the "
                                         f"poses tried; use a smaller --square or --board")
                prop.place(*pose)
                frames.append(shot())
            calibration = calibrate_intrinsics(frames, board)
            place = surveyed_place(truth, board, prop.outline, scene, surface_z)
            if place is None:
                raise CalibrateError(f"camera {sensor.name!r} sees no place on the work surface (z = {surface_z:.3f} m) where "
                                     f"{what} lies wholly in view with nothing over it; use a smaller --square or --board")
            prop.place(*place)
            board_pose = prop.board_pose()
            image = shot()
            if find_corners(image, board) is None:
                middle = ", ".join(f"{v:.3f}" for v in place[1] + place[0] @ board_centre(board))
                raise CalibrateError(f"camera {sensor.name!r} does not make out {what} lying on the work surface at "
                                     f"({middle}) m: too small or too oblique in its image; use a bigger --square")
            found = camera_pose_from_board(image, board, calibration.K, calibration.dist, board_pose)
        finally:
            prop.remove()  # before anything resets the env: Bullet restores a state only into the same bodies
    finally:
        env.close()

    turn = found.R @ truth.R.T
    rotation_deg = math.degrees(math.acos(float(np.clip((np.trace(turn) - 1.0) / 2.0, -1.0, 1.0))))
    figures = {
        "mode": "sim", "scenario": cell.scenario.name, "camera": sensor.name, "board": _board_dict(board),
        "views": views, "views_used": list(calibration.views_used), "seed": seed, "supersample": supersample,
        "surface_z": surface_z, "board_pose": {"R": board_pose[0].tolist(), "t": board_pose[1].tolist()},
        "found": _camera_dict(found), "truth": _camera_dict(truth), "rms_px": calibration.rms,
        "errors": {
            "fx_pct": 100.0 * (found.fx / truth.fx - 1.0),
            "fy_pct": 100.0 * (found.fy / truth.fy - 1.0),
            "principal_point_px": float(math.hypot(found.cx - truth.cx, found.cy - truth.cy)),
            "rms_px": calibration.rms,
            "position_mm": 1000.0 * float(np.linalg.norm(found.position - truth.position)),
            "rotation_deg": rotation_deg,
        },
    }
    return figures, found


def _camera_name(scenario, name: Optional[str]) -> str:
    from scenarios.naming import did_you_mean

    cameras = [c.name for c in scenario.cameras]
    if name is None:
        perception = [c.name for c in scenario.cameras if "perception" in c.use]
        if not perception:
            raise CalibrateError(f"scenario {scenario.name!r} has no `use: perception` camera; name one with --camera "
                                 f"(cameras: {', '.join(cameras) or 'none'})")
        return perception[0]
    if name not in cameras:
        raise CalibrateError(f"scenario {scenario.name!r} has no camera {name!r}; cameras: {', '.join(cameras) or 'none'}"
                             + did_you_mean(name, cameras))
    return name


# ---------------------------------------------------------------------- real mode


def _from_source(spec: str, board, every: int, max_views: int):
    from perception.calibration import calibrate_intrinsics, find_corners
    from perception.source import open_source

    kept, read, seen = [], 0, 0
    with open_source(spec) as frames:
        name = frames.name
        for frame in frames:
            read += 1
            if find_corners(frame, board) is None:
                continue
            seen += 1
            if (seen - 1) % every == 0:  # consecutive frames show nearly the same view: spread the kept ones
                kept.append(frame)
                if len(kept) >= max_views:
                    break
    what = f"the {board.cols}x{board.rows} checkerboard"
    if not seen:
        raise CalibrateError(f"{what} was not found in any of the {read} frames of {name}")
    if len(kept) < 3:
        raise CalibrateError(f"calibration needs {what} in at least 3 kept frames; {name} gave {len(kept)} "
                             f"(found in {seen} of {read} frames, keeping every {every}: lower --every)")
    calibration = calibrate_intrinsics(kept, board)
    found = calibration.camera()
    figures = {
        "mode": "source", "source": name, "board": _board_dict(board), "every": every, "max_views": max_views,
        "frames_read": read, "frames_with_board": seen, "views": len(kept), "views_used": list(calibration.views_used),
        "found": _camera_dict(found, pose=False), "rms_px": calibration.rms,
    }
    return figures, found


# ---------------------------------------------------------------------- output


def _board_dict(board) -> dict:
    return {"cols": board.cols, "rows": board.rows, "square": board.square}


def _camera_dict(camera, pose: bool = True) -> dict:
    data = {"width": camera.width, "height": camera.height, "fx": camera.fx, "fy": camera.fy, "cx": camera.cx,
            "cy": camera.cy, "dist": camera.dist.tolist()}
    if pose:
        data.update(position=camera.position.tolist(), R=camera.R.tolist(), t=camera.t.tolist())
    return data


def _report(f: dict) -> list[str]:
    b, found = f["board"], f["found"]
    board = f"{b['cols']}x{b['rows']} board of {b['square'] * 1000:g} mm squares"
    if f["mode"] == "source":
        return [
            f"calibrated {f['source']} ({found['width']}x{found['height']}) from {len(f['views_used'])} views of a {board} "
            f"(board in {f['frames_with_board']} of {f['frames_read']} frames, every {f['every']} kept)",
            f"fx {found['fx']:.2f} px  fy {found['fy']:.2f} px  principal point ({found['cx']:.2f}, {found['cy']:.2f}) px  "
            f"reprojection RMS {f['rms_px']:.3f} px",
            "distortion k1 k2 p1 p2 k3: " + " ".join(f"{k:+.4f}" for k in found["dist"]),
            "no camera pose: a video does not say where the board lay in the world (the file's R, t are the identity)",
        ]
    truth, e = f["truth"], f["errors"]
    position = ", ".join(f"{v:.4f}" for v in found["position"])
    return [
        f"calibrated camera {f['camera']!r} of {f['scenario']} ({truth['width']}x{truth['height']}) from "
        f"{len(f['views_used'])} of {f['views']} views of a {board}; pose from the board on the work surface "
        f"(z = {f['surface_z']:.3f} m)",
        f"fx {found['fx']:.2f} px (truth {truth['fx']:.2f}, {e['fx_pct']:+.2f} %)  "
        f"fy {found['fy']:.2f} px (truth {truth['fy']:.2f}, {e['fy_pct']:+.2f} %)",
        f"principal point ({found['cx']:.2f}, {found['cy']:.2f}) px (truth ({truth['cx']:.2f}, {truth['cy']:.2f}), "
        f"off by {e['principal_point_px']:.2f} px)  reprojection RMS {e['rms_px']:.3f} px",
        f"camera position ({position}) m, off by {e['position_mm']:.1f} mm; rotation off by {e['rotation_deg']:.2f} deg",
    ]
