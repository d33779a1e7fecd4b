"""The policies package's user-facing errors: bad configs, runs, demos, bundles and evaluations."""


class PolicyError(Exception):
    """Base of every policies error the app reports as one line (no traceback)."""
