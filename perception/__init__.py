"""Seeing the cell: camera models, part localisation and calibration, deployable on a cell PC.

numpy and OpenCV only (no PyBullet, no torch, no other genba package), so the same code runs in
the simulator, in the digital twin on the controller side, and next to a real camera.
"""
