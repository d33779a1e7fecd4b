"""Yaskawa High-Speed Ethernet Server (HSES): the UDP protocol of Yaskawa's robot controllers (FS100, DX200,
YRC1000). Controller side: standard library and numpy only; imports no other genba package.

- ``packets``: the 32-byte header, requests and replies, encoded and checked;
- ``payloads``: the data parts of the commands genba speaks (status, position, torque, alarm, moves);
- ``units``: pulses, micrometres, 0.0001 deg and speed words <-> SI; ``HsesAxes`` and genba's ``GP7_AXES``;
- ``errors``: malformed packets, timeouts and the controller's status codes as typed exceptions;
- ``client``: ``HsesClient``, the blocking UDP client with request IDs, timeouts and retries;
- ``adapter``: ``HsesAdapter``, a bundle's actions as HSES moves each policy period, with the safety filter,
  holds on lost replies and stops on faults; ``cell_link``: its link to the cell PC (ZeroMQ, msgpack).

The emulator that answers this protocol from a PyBullet cell is genba.hses; the layouts are in docs/hses.md.
"""

from bridge.hses.client import HsesClient
from bridge.hses.errors import HsesError, HsesStatusError, HsesTimeout, PacketError
from bridge.hses.payloads import Alarm, CartesianMotion, CycleMode, Frame, Position, PulseMotion, ResetKind, StatusBits
from bridge.hses.units import GP7_AXES, HsesAxes, MoveSpeed

__all__ = [
    "GP7_AXES", "Alarm", "CartesianMotion", "CycleMode", "Frame", "HsesAxes", "HsesClient", "HsesError",
    "HsesStatusError", "HsesTimeout", "MoveSpeed", "PacketError", "Position", "PulseMotion", "ResetKind", "StatusBits",
]
