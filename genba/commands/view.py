"""`genba view`: watch a cell in the PyBullet GUI, record it to a video, or follow it live in a browser;
`--overlay` draws what perception finds on the recorded and streamed frames (genba/viewer/overlay.py).

`register(app)` adds the verb to the `genba` command.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from bridge.endpoints import is_loopback_host
from genba.errors import AppError
from genba.jsonfile import json_option, write_json


class ViewUsageError(AppError):
    """Flags that do not fit together."""


def _floats(text: Optional[str], n: int, flag: str) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise ViewUsageError(f"{flag} takes {n} comma-separated numbers, got {text!r}")
    return values


def view_cmd(
    scenario: Optional[str] = typer.Argument(None, help="built-in scenario or YAML path (default: the --policy's own)"),
    policy: Optional[Path] = typer.Option(None, "--policy", help="run directory, snapshot or bundle to drive the robot"),
    expert: bool = typer.Option(False, "--expert", help="drive the robot with the scripted expert (the default)"),
    which: str = typer.Option("best", help="for a --policy run directory: best | final | latest"),
    robot: Optional[str] = typer.Option(None, help="robot model override (panda, gp7)"),
    episodes: Optional[int] = typer.Option(None, help="episodes to run (default: 1; with --web or --seconds, no limit)"),
    seconds: Optional[float] = typer.Option(None, help="stop after this much simulated time"),
    seed: int = typer.Option(0, min=0, help="episode i resets with seed + i"),
    gui: bool = typer.Option(False, "--gui", help="open the PyBullet GUI window (needs a display)"),
    record: Optional[Path] = typer.Option(None, "--record", help="write a video (.mp4, .avi) rendered headless"),
    web: bool = typer.Option(False, "--web", help="serve a live page with stream, status, plots and controls"),
    host: str = typer.Option("127.0.0.1", help="--web address; loopback unless told otherwise"),
    port: int = typer.Option(8000, help="--web port (0 = any free port; the URL is printed)"),
    fps: float = typer.Option(10.0, help="--web frame-rate cap (each frame costs ~50 ms of CPU at 320x240)"),
    video_fps: Optional[float] = typer.Option(None, help="--record frame rate (default: the control rate, max 30)"),
    speed: Optional[float] = typer.Option(None, help="real-time factor; 0 = as fast as possible "
                                                     "(default 1 with --gui/--web, else 0)"),
    camera: Optional[str] = typer.Option(None, help="scenario camera name (default: its first)"),
    width: Optional[int] = typer.Option(None, help="frame width in pixels (default: the camera's)"),
    height: Optional[int] = typer.Option(None, help="frame height in pixels (default: the camera's)"),
    cam_target: Optional[str] = typer.Option(None, help="camera target 'x,y,z' (m)"),
    cam_distance: Optional[float] = typer.Option(None, help="camera distance to the target (m)"),
    cam_yaw: Optional[float] = typer.Option(None, help="camera yaw about z (rad)"),
    cam_pitch: Optional[float] = typer.Option(None, help="camera pitch (rad, negative looks down)"),
    fov: Optional[float] = typer.Option(None, help="vertical field of view (rad)"),
    overlay: bool = typer.Option(False, "--overlay", help="draw what perception finds on the cell's perception camera "
                                                          "(box, class, pose axes) on the --record/--web frames"),
    json_path: Optional[Path] = json_option("write the run summary as JSON"),
) -> None:
    """Watch a cell: --gui window, --record video, or --web live page (any combination)."""
    # Imported on use: PyBullet, torch and aiohttp are not needed to parse flags or print --help.
    import sim
    from genba.viewer.loop import LoopOptions, ViewLoop, record_every_for
    from policies.policy import load_policy
    from sim.camera import aim_gui, choose_camera

    if policy is not None and expert:
        raise ViewUsageError("--policy and --expert exclude each other; pick one")
    if not (gui or record or web):
        raise ViewUsageError("nothing to show: add --gui, --record PATH or --web")
    if overlay and not (record or web):
        raise ViewUsageError("--overlay draws on the frames of --record or --web; the --gui window shows PyBullet's own view")
    if episodes is not None and episodes < 1:
        raise ViewUsageError(f"--episodes must be >= 1, got {episodes}")
    if seconds is not None and not seconds > 0:
        raise ViewUsageError(f"--seconds must be > 0, got {seconds}")
    if video_fps is not None and not video_fps > 0:
        raise ViewUsageError(f"--video-fps must be > 0, got {video_fps}")
    if speed is not None and speed < 0:
        raise ViewUsageError(f"--speed must be >= 0, got {speed}")
    target = _floats(cam_target, 3, "--cam-target")

    loaded = load_policy(policy, which=which) if policy is not None else None
    scenario = scenario or (loaded.own_scenario() if loaded is not None else None)
    if scenario is None:
        raise ViewUsageError("name a SCENARIO (or a --policy that records its own)")
    try:
        env = sim.make_env(scenario, robot=robot or (loaded.robot if loaded else None),
                           render_mode="human" if gui else "rgb_array", obs_mode=loaded.obs_mode if loaded else "state",
                           observe_command=bool(loaded and loaded.observe_command))
    except ValueError as exc:  # schema validation of an override
        raise ViewUsageError(f"cannot build {scenario!r}: {exc}") from None

    with ExitStack() as stack:  # SIGTERM ends it as Ctrl-C does (genba.runner): the video is finished, the port freed
        stack.callback(env.close)
        driver, label = (loaded.policy, f"{loaded.kind}: {loaded.path}") if loaded else (_expert(env), "expert")
        cam = choose_camera(env, camera, target=target, distance=cam_distance, yaw=cam_yaw, pitch=cam_pitch,
                            fov=fov, width=width, height=height)
        if gui:
            aim_gui(env, cam)
        decorate = _overlay(env, cam) if overlay else None
        control_hz = env.unwrapped.scenario.physics.control_hz
        every, rec_fps = record_every_for(control_hz, video_fps)
        recorder = None
        if record is not None:
            from sim.video import VideoRecorder

            if video_fps is not None and abs(rec_fps - video_fps) > 0.01 * video_fps:  # a frame is a whole number of steps
                typer.secho(f"note: --video-fps {video_fps:g}: a frame every {every} step(s) of the {control_hz:g} Hz loop "
                            f"gives {rec_fps:g} fps", fg=typer.colors.YELLOW, err=True)

            recorder = VideoRecorder(record, fps=rec_fps, size=(cam.width, cam.height))
            stack.callback(recorder.close)
        view = None
        if web:
            from genba.viewer.live import LiveView

            title = f"{env.unwrapped.scenario.name} ({label})"
            view = stack.enter_context(LiveView(host=host, port=port, fps=fps, title=title))
            if not is_loopback_host(host):
                typer.secho(f"warning: the viewer listens on {host}: anyone on that network can pause and reset it",
                            fg=typer.colors.YELLOW, err=True)
            typer.echo(f"live view: {view.url} (Ctrl-C to stop)")
            sys.stdout.flush()
        options = LoopOptions(
            episodes=episodes if episodes is not None else (None if web or seconds else 1), seconds=seconds, seed=seed,
            speed=speed if speed is not None else (1.0 if gui or web else 0.0), record_every=every,
        )
        labels = {"scenario": env.unwrapped.scenario.name, "driver": label}
        def episode_line(done: int, success: bool) -> None:  # a headless recording showed nothing until its end
            typer.echo(f"episode {done}{f'/{options.episodes}' if options.episodes else ''}: "
                       f"{'success' if success else 'failure'}", err=True)

        summary = ViewLoop(env, driver, cam, options=options, view=view, recorder=recorder, labels=labels,
                           decorate=decorate, on_episode=None if gui or web else episode_line).run()
        video = recorder.close() if recorder is not None else None

    result = summary.to_dict()
    result.update(scenario=env.unwrapped.scenario.name, driver=label, overlay=decorate.camera_name if decorate else None,
                  video=str(video) if video else None, video_fps=rec_fps if video else None,
                  video_size=list(recorder.video_size) if video else None, frame_size=[cam.width, cam.height])
    write_json(json_path, result)
    line = (f"{summary.episodes} episodes, {summary.successes} successful, {summary.steps} steps "
            f"({summary.sim_time_s:.1f} s simulated) in {summary.wall_s:.1f} s")
    if video:
        width, height = recorder.video_size
        padded = "" if (width, height) == (cam.width, cam.height) else f" (frames {cam.width}x{cam.height}, padded to even)"
        line += f"; video {video}: {summary.frames_recorded} frames {width}x{height}{padded} at {rec_fps:g} fps"
    elif record is not None:
        line += "; no frames recorded, no video written"
    typer.echo(line)


def _expert(env):
    """The scenario's scripted expert, or a clear error where its task has none."""
    from sim.experts import make_expert

    try:
        return make_expert(env)
    except (KeyError, ValueError) as exc:
        raise ViewUsageError(f"no scripted expert for this scenario: {exc}; use --policy RUN_OR_BUNDLE") from None


def _overlay(env, cam):
    """The perception overlay for the view camera `cam`, or a clear error where the cell has no perception camera."""
    from genba.viewer.overlay import OverlayError, PerceptionOverlay

    try:
        return PerceptionOverlay(env, cam)
    except OverlayError as exc:
        raise ViewUsageError(str(exc)) from None


def register(app: typer.Typer) -> None:
    app.command("view")(view_cmd)

