"""genba: physical-AI stack for factory robot cells (the CLI lives in genba.cli)."""

__version__ = "0.1.0"
