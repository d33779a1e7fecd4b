"""Watching a cell: recorded video, and a live page in the browser.

- `recorder.VideoRecorder`: headless video files (`genba view --record`, `genba eval --video`).
- `live.LiveView`: a loopback web server any loop can push frames and status into, and that hands
  back pause / step / reset requests (`genba view --web` and the twin's `--web`).
- `loop.ViewLoop`: steps an env with a policy or expert, feeding a recorder and/or a LiveView.

Submodules are imported on use, so `from genba.viewer import recorder` does not pull in aiohttp.
"""
