"""The app's own errors, and every library's base error: what the CLI reports as one line."""

from bridge.errors import BridgeError
from perception.errors import PerceptionError
from policies.errors import PolicyError
from scenarios.loader import ScenarioError
from sim.errors import SimError


class AppError(Exception):
    """A command that cannot run as asked: flags that do not fit together, a failed stage of the demo."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while a command ran; the message says what was kept and how to go on (exit 130)."""


# Expected failures of any package: one red line and exit 1, never a traceback.
USER_ERRORS = (AppError, ScenarioError, PerceptionError, SimError, PolicyError, BridgeError)
