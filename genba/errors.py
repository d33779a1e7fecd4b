"""Errors that the CLI reports as one clear line (no traceback)."""


class GenbaError(Exception):
    """Base for every user-facing error: bad input, missing file, incompatible bundle."""
