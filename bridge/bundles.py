"""Load the bundles a server serves, on the device it was told to use (server side only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bridge.realtime import limit_threads
from genba.errors import GenbaError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "onnx", "torchscript")


class DeviceError(GenbaError):
    """--device cuda where no CUDA device is usable, or an unknown device/backend name."""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise DeviceError(f"--device {device!r}: use one of {list(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise DeviceError("--device cuda: torch sees no CUDA device here; use --device cpu (or auto)")
    return device


def resolve_backend(backend: str, device: str) -> str:
    """ONNX Runtime is the fastest for small MLPs on CPU; the GPU path runs TorchScript on CUDA."""
    if backend not in BACKENDS:
        raise DeviceError(f"--backend {backend!r}: use one of {list(BACKENDS)}")
    if backend == "auto":
        return "torchscript" if device == "cuda" else "onnx"
    return backend


def load_served_bundles(paths: Sequence[str | Path], device: str = "auto", backend: str = "auto"):
    """The loaded bundles (policies.bundle.Bundle objects), checked and warmed up."""
    limit_threads()
    from policies.bundle import load_bundle  # raises BundleError (a GenbaError) with the reason

    device = resolve_device(device)
    backend = resolve_backend(backend, device)
    if backend == "torchscript":
        import torch

        torch.set_num_threads(1)
    bundles = [load_bundle(path, backend=backend, device=device, threads=1) for path in paths]
    return bundles, device, backend
