"""Names shared by everything that reads scenarios: robot models, env ids and "did you mean" hints."""

from __future__ import annotations

import difflib
from typing import Iterable

# The robot models a scenario may name, with how each appears in an env id (genba/ReachGP7-v0).
ROBOT_MODELS = ("panda", "gp7")
ROBOT_ID_SUFFIX = {"panda": "Panda", "gp7": "GP7"}


def env_id(scenario_name: str, version: int, robot: str | None = None) -> str:
    """`genba/ConveyorPick-v0` for conveyor-pick v0 with its own robot; `genba/ConveyorPickGP7-v0` with another."""
    camel = "".join(part.capitalize() for part in scenario_name.split("-"))
    return f"genba/{camel}{ROBOT_ID_SUFFIX[robot] if robot else ''}-v{version}"


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
