"""A request the emulated controller refuses, with the status it answers (raised by handlers and move planning)."""

from __future__ import annotations

from bridge.hses.errors import ADDED_STATUS, STATUS_ADDED


class Refusal(Exception):
    """Answer with ``status`` (0x1F plus ``added_status``, or a stand-alone status byte) and do nothing."""

    def __init__(self, added_status: int, detail: str = "", status: int = STATUS_ADDED) -> None:
        name = ADDED_STATUS.get(added_status, ("", ""))[0] if status == STATUS_ADDED else f"status 0x{status:02X}"
        super().__init__(f"{name or hex(added_status)}: {detail}" if detail else name)
        self.status, self.added_status, self.detail = status, added_status, detail
