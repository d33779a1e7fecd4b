"""Seeing the cell: camera models, part localisation and calibration, deployable on a cell PC.

camera_model (the pinhole camera, OpenCV's convention), localize (parts: class, centre, yaw, from RGB
and optional depth), calibration (checkerboard intrinsics and camera pose, JSON files), source (frames
from a device, file or stream), overlay (detections drawn on a frame), errors.

numpy and OpenCV only (no PyBullet, no torch, no other genba package), so the same code runs in
the simulator, in the digital twin on the controller side, and next to a real camera.
"""
