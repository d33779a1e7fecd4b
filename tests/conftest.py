import os

# Small MLPs and PyBullet are fastest single-threaded on this 2-core machine (DEVELOPERS.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from genba.gantry_bundle import cached_gantry_bundle  # noqa: E402
from policies.bundle import load_bundle  # noqa: E402


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory):
    """The gantry bundle (genba/gantry_bundle.py) the bridge tests serve: a real ONNX + TorchScript export."""
    return cached_gantry_bundle(tmp_path_factory.getbasetemp() / "bundles")


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    """The gantry bundle, loaded (onnxruntime on the CPU)."""
    return load_bundle(bundle_dir, backend="onnx", device="cpu")
