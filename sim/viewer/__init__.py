"""Simulation viewer: PyBullet GUI, recorded video, and a live page in the browser.

- `recorder.VideoRecorder`: headless video files (also behind `genba eval --video`).
- `live.LiveView`: a loopback web server any loop can push frames and status into, and that hands
  back pause / step / reset requests (the bridge's twin uses it too).
- `loop.ViewLoop`: steps an env with an expert or policy, feeding a recorder and/or a LiveView.
- `cli`: the `genba view` command.

Submodules are imported on use, so `from sim.viewer import recorder` does not pull in aiohttp.
"""
