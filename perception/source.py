"""Frames from a camera, a video file or a stream, through OpenCV's VideoCapture, as RGB uint8 arrays.

    with open_source("0") as frames:            # device 0 (a USB or built-in camera)
        for rgb in frames: ...
    open_source("line3.mp4")                    # a recording
    open_source("rtsp://10.0.0.7/stream1")      # an IP camera (anything with "://")
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional, Union

import cv2
import numpy as np

from perception.errors import SourceError


class FrameSource:
    """An open VideoCapture; iterate it for RGB frames until the source ends. Close it (or use `with`)."""

    def __init__(self, capture: cv2.VideoCapture, name: str):
        self._capture: Optional[cv2.VideoCapture] = capture
        self.name = name

    @property
    def fps(self) -> float:
        """Frames per second the source reports (0.0 when it does not say)."""
        return float(self._open().get(cv2.CAP_PROP_FPS))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels the source reports."""
        capture = self._open()
        return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def read(self) -> Optional[np.ndarray]:
        """The next frame as (H, W, 3) RGB uint8, or None at the end of a file or a stream that stopped."""
        ok, frame = self._open().read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    @property
    def closed(self) -> bool:
        return self._capture is None

    def _open(self) -> cv2.VideoCapture:
        if self._capture is None:
            raise SourceError(f"video source {self.name} is closed")
        return self._capture

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(spec: Union[str, int, Path]) -> FrameSource:
    """Open a device index ("0" or 0), a video file path, or a stream URL (anything containing "://")."""
    text = str(spec).strip()
    if not text:
        raise SourceError("no video source given: name a device index, a video file or a stream URL")
    if text.isdigit():
        name, target = f"camera device {text}", int(text)
    elif "://" in text:
        name, target = f"stream {text}", text
    else:
        path = Path(text)
        if not path.is_file():
            raise SourceError(f"no video file at {path}" if not path.exists() else f"{path} is not a file")
        name, target = f"video file {path}", str(path)
    with _opencv_quiet():  # each backend it tries logs why it could not open: the error below says it once
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {name}: OpenCV's VideoCapture found no readable video there")
    return FrameSource(capture, name)


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log at errors only while the block runs."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
