"""The perception package's user-facing errors: bad camera models, frames, sources, calibrations."""


class PerceptionError(Exception):
    """Base of every perception error the app reports as one line (no traceback)."""
