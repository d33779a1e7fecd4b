"""An HSES controller emulator: Yaskawa's High-Speed Ethernet Server protocol answered from a PyBullet cell.

    genba hses-sim SCENARIO --bind 127.0.0.1:10040 [--robot gp7] [--speed 1.0]

- emulator.py: ``HsesEmulator``, the UDP server thread, malformed-datagram handling, retries, fault injection;
- controller.py: the controller's state (mode, remote, servo, hold, cycle, alarms) and its answer to each request;
- motion.py: the cell and its arm, one planned and checked move at a time;
- cell_channel.py: the cell PC beside it (ZeroMQ REP): describe, reset(seed), sense, fault;
- run.py: `genba bridge run --controller hses://...`, the adapter wired to its peers, and its report;
- kinematics.py: base-frame poses, Rx/Ry/Rz, forward kinematics for checking targets; refusal.py: a refused request.

The protocol itself (packets, payloads, units, the client) is bridge.hses; docs/hses.md has the layouts.
"""

from genba.hses.controller import Controller, ControllerState
from genba.hses.emulator import EmulatorError, Faults, HsesEmulator

__all__ = ["Controller", "ControllerState", "EmulatorError", "Faults", "HsesEmulator"]
