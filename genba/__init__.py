"""genba: physical-AI stack for factory robot cells. This package is the app on top of the libraries.

- `cli` and `commands/`: the one `genba` command; `runner`: expected errors as one line.
- `viewer/`: the live page and the view loop; `twin/`: the PyBullet cell as a controller through the bridge.
- `server_process`: `genba bridge serve` as a child process; `gantry_bundle`: real bundles for the physics-free gantry.

Libraries below it, each importing only those under it: `scenarios` < `sim` < `policies`, and `bridge`
(tests/test_architecture.py checks the direction).
"""

__version__ = "0.1.0"
