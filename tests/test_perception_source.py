"""Video sources: a recorded MP4 reads back frame for frame; sources that cannot be opened say which and why."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.errors import PerceptionError, SourceError
from perception.source import open_source

WIDTH, HEIGHT, COUNT, FPS = 96, 64, 12, 10.0


def synthetic_frames() -> list[np.ndarray]:
    """RGB frames with large smooth features (a codec keeps them): a gradient and a moving coloured square."""
    frames = []
    ramp = np.linspace(0, 255, WIDTH, dtype=np.float64)[None, :].repeat(HEIGHT, axis=0)
    for i in range(COUNT):
        frame = np.stack([ramp, np.full_like(ramp, 60.0 + 10 * i), 255 - ramp], axis=2).astype(np.uint8)
        cv2.rectangle(frame, (8 + 5 * i, 16), (28 + 5 * i, 40), (250, 200, 20), -1)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "line.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    frames = synthetic_frames()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # VideoWriter takes BGR
    writer.release()
    return path, frames


def test_a_recorded_video_reads_back_frame_for_frame_in_rgb(recording):
    path, originals = recording
    with open_source(str(path)) as source:
        assert source.size == (WIDTH, HEIGHT)
        assert source.fps == pytest.approx(FPS)
        frames = list(source)
    assert len(frames) == COUNT
    difference = np.array([[np.abs(f.astype(int) - o.astype(int)).mean() for o in originals] for f in frames])
    for frame in frames:
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
    assert difference.diagonal().max() < 5  # lossy (mp4v, 4:2:0 colour), but close: about 3 grey levels
    assert np.array_equal(difference.argmin(axis=1), np.arange(COUNT))  # each frame is nearest its own original: in order
    # Channels come back in RGB order: the square is yellow-orange (R high, B low), not blue.
    red, _, blue = frames[0][28, 18]
    assert red > 200 and blue < 80


def test_a_closed_source_refuses_to_read_and_closing_twice_is_harmless(recording):
    path, _ = recording
    source = open_source(path)  # a Path works as well as a string
    assert source.read() is not None
    source.close()
    source.close()
    assert source.closed
    with pytest.raises(SourceError, match=r"video file .*line.mp4 is closed"):
        source.read()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SourceError, match=r"no video file at .*nothing.mp4"):
        open_source(tmp_path / "nothing.mp4")


def test_a_file_that_is_not_a_video_is_named(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(SourceError, match=r"cannot open video file .*notes.mp4"):
        open_source(str(path))


def test_a_directory_or_an_empty_spec_is_refused(tmp_path):
    with pytest.raises(SourceError, match=r"is not a file"):
        open_source(tmp_path)
    with pytest.raises(PerceptionError, match="no video source given"):
        open_source("  ")


def test_a_url_is_opened_as_a_stream(recording):
    path, _ = recording
    with open_source(path.as_uri()) as source:  # file:// stands in for rtsp:// or http:// here (no network in tests)
        assert source.name.startswith("stream file://")
        assert len(list(source)) == COUNT


def test_an_absent_camera_device_is_named():
    with pytest.raises(SourceError, match="cannot open camera device 97"):
        open_source("97")
