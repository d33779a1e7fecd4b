"""Where a policy trains or runs: `auto` picks CUDA when torch sees a CUDA device."""

from __future__ import annotations

from policies.errors import PolicyError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(PolicyError):
    """An unknown device name, or `cuda` where torch sees no CUDA device."""


def cuda_available() -> bool:
    import torch  # heavy: only when a device is actually resolved

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """"cpu" or "cuda" for a --device value; refuses "cuda" where it cannot run."""
    if device not in DEVICES:
        raise DeviceError(f"--device {device!r}: use one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise DeviceError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    return device
