"""The sim package's user-facing errors: a cell that cannot be built, shown or rendered."""


class SimError(Exception):
    """Base of every sim error the app reports as one line (no traceback)."""
