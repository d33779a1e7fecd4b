"""The digital twin: a PyBullet cell acting as the robot controller, served through the real bridge.

    genba bridge twin SCENARIO --connect ENDPOINT [--bundle NAME] [--episodes N] [--servo-hz HZ] [--json PATH] [--web]

- run.py: the episodes (observe, ask the server, stream setpoints through the controller's servo pipeline).
- tool_limits.py: the safety limits of the streamed tool target, from the cell's robot description.
- faults.py: injected latency, jitter and lost replies; live_page.py: the `--web` page; report.py: the figures.

With ``--web`` the twin serves the same live page as ``genba view --web``: the cell's camera, the
viewer's status fields, plus the round trip, deadline misses, safety interventions and holds. Pause
freezes the cell: no requests and no physics step (in the sim, a frozen cell is a robot held still),
with a heartbeat each second so neither the server (10 s session timeout) nor the client drops the
session; step runs one control period; reset ends the episode (it counts, as a failure unless the
cell already reported success).
"""

from genba.twin.config import Faults, TwinConfig, TwinError, WebOptions
from genba.twin.report import TwinReport
from genba.twin.run import run_twin

__all__ = ["Faults", "TwinConfig", "TwinError", "TwinReport", "WebOptions", "run_twin"]
