"""The perception package's user-facing errors: bad camera models, frames, sources, calibrations."""


class PerceptionError(Exception):
    """Base of every perception error the app reports as one line (no traceback)."""


class CalibrationError(PerceptionError):
    """A calibration that cannot be made or read: too few views of the board, no board in view, a bad file."""


class SourceError(PerceptionError):
    """A video source that cannot be opened or read: a missing file, an absent device, a dead stream."""
