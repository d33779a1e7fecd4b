"""Flags more than one verb takes, defined once."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer


class Observe(str, Enum):
    """What a state policy or the scripted expert is given: the simulator's truth, or what a camera sees."""

    state = "state"
    perceived = "perceived"
    pixels = "pixels"


OBS_HELP = ("state: the simulator's exact part poses; perceived: the same features as the cell's camera and perception "
            "measure them (what a real cell provides); pixels: camera images and the robot's readings (a CNN student "
            "taught by the scripted expert)")


def obs_option() -> Observe:
    return typer.Option(Observe.state, "--obs", help=OBS_HELP)


def randomization_option() -> Optional[str]:
    return typer.Option(None, "--randomization", help="domain-randomisation profile merged over the scenario's "
                        "randomization section: a shipped name (shop-floor) or a YAML path")


def play_option() -> bool:
    return typer.Option(False, "--play", help="every dynamics / sensing / visuals randomisation off (task draws kept)")


def progress_option() -> Optional[bool]:
    return typer.Option(None, "--progress/--no-progress", help="show progress bars (default: when stderr is a terminal)")


def show_progress(flag: Optional[bool]) -> bool:
    """--progress as given, else only on a terminal: redirected to a log, a bar is a line of carriage returns a second."""
    return sys.stderr.isatty() if flag is None else flag
