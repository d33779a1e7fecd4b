"""Headless video recording with OpenCV: `genba view --record` and `genba eval --video` both use it.

    with VideoRecorder("out.mp4", fps=20) as rec:
        rec.add(env.render())        # RGB uint8 (H, W, 3); the first frame fixes the size

The file is written under a temporary name and moved into place on close, so an interrupted run
never leaves a half-written file at the requested path. Odd frame sizes are padded by one repeated
row or column: OpenCV's writers (mp4v, MJPG) silently cropped them to even.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from sim.errors import SimError

# Codec per container: mp4v needs nothing outside the opencv-python wheel's bundled FFmpeg.
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class RecorderError(SimError):
    """A video that cannot be written: unknown container, bad frame, no codec."""


class VideoRecorder:
    """Write RGB frames to a video file at a fixed frame rate.

    `size` is (width, height); when None the first frame decides it. Every later frame must match
    (a silent resize would hide a camera misconfiguration).
    """

    def __init__(self, path: str | Path, fps: float, size: Optional[tuple[int, int]] = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in FOURCC:
            raise RecorderError(f"{self.path}: unknown video container; use one of {', '.join(FOURCC)}")
        if not fps > 0:
            raise RecorderError(f"video fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.size = tuple(size) if size is not None else None
        self.frames = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None
        try:  # now, not at the end: OpenCV opens an unwritable file "successfully", and the run's results were lost
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.touch()
            self._tmp.unlink()
        except FileExistsError:  # mkdir where a file stands
            raise RecorderError(f"{self.path}: cannot write a video there (a file, not a folder, is in the way)") from None
        except OSError as exc:
            raise RecorderError(f"{self.path}: cannot write a video there ({exc.strerror or exc})") from None

    def add(self, frame: np.ndarray) -> None:
        if frame is None:
            raise RecorderError("no frame to record: the env does not render (use render_mode='rgb_array')")
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] < 3:
            raise RecorderError(f"expected an RGB image (H, W, 3), got shape {frame.shape}")
        frame = np.ascontiguousarray(frame[:, :, 2::-1], dtype=np.uint8)  # RGB(A) -> BGR for OpenCV
        h, w = frame.shape[:2]
        if self.size is None:
            self.size = (w, h)
        if (w, h) != self.size:
            raise RecorderError(f"frame is {w}x{h} but the video is {self.size[0]}x{self.size[1]}")
        if self._writer is None:
            self._open()
        pad_w, pad_h = self.video_size[0] - w, self.video_size[1] - h
        if pad_w or pad_h:
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        self._writer.write(frame)
        self.frames += 1

    @property
    def video_size(self) -> Optional[tuple[int, int]]:
        """(width, height) of the file: the frames' size, each made even."""
        return None if self.size is None else (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, self.video_size)
        if not self._writer.isOpened():
            raise RecorderError(f"{self.path}: OpenCV cannot open a {self.path.suffix} writer here")

    def close(self) -> Optional[Path]:
        """Finish the file; returns its path, or None when no frame was added (nothing is written)."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        if not self._tmp.is_file():
            raise RecorderError(f"{self.path}: OpenCV wrote no file (its {self.path.suffix} writer failed without saying why)")
        os.replace(self._tmp, self.path)
        return self.path

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # keep what was recorded even when the loop failed: it shows what went wrong
