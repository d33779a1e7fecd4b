"""The byte-level examples in docs/bridge-protocol.md, produced by the real encoder.

    python -m bridge.docgen     # prints the ```hex blocks to paste into the doc

tests/test_bridge_protocol.py checks that the doc's bytes equal these and still decode.
"""

from __future__ import annotations

import numpy as np

from bridge import gantry
from bridge import protocol as wire
from bridge.limits import SafetyLimits
from bridge.protocol import ErrorCode

SPEC_HASH = "3f5a" * 16  # stands in for a bundle's sha256 spec hash
T0 = 1_000_000_000  # sender monotonic ns (any host-local value)


def example_messages() -> dict[str, list[bytes]]:
    limits = SafetyLimits.from_robot_spec(gantry.robot_spec()).to_robot_spec()
    hello = wire.encode({
        "v": 1, "type": "hello", "seq": 1, "t_ns": T0, "bundle": "gantry-reach", "spec_hash": SPEC_HASH,
        "client": "cell-7", "robot": {"model": "gantry-3", "joint_names": ["x", "y", "z"]},
    })
    welcome = wire.encode({
        "v": 1, "type": "welcome", "seq": 1, "t_ns": 5_000_000, "re": 1, "bundle": "gantry-reach",
        "spec_hash": SPEC_HASH, "session": "9c1d2e3f4a5b6c7d", "obs_dim": 6, "act_dim": 3, "control_hz": 20.0,
        "action_kind": "joint_delta", "action_low": [-1.0] * 3, "action_high": [1.0] * 3, "limits": limits,
        "max_message_bytes": wire.DEFAULT_MAX_MESSAGE_BYTES, "protocol": [1],
    })
    obs = np.array([0.0, 0.0, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)
    step = wire.encode({"v": 1, "type": "step", "seq": 2, "t_ns": T0, "deadline_us": 25_000}, [obs])
    action = wire.encode(
        {"v": 1, "type": "action", "seq": 2, "re": 2, "t_ns": 5_210_000, "queue_us": 21.5, "infer_us": 18.0, "batch": 1},
        [np.array([0.5, -0.25, -1.0], dtype=np.float32)],
    )
    error = wire.error_frames(ErrorCode.STALE_SEQUENCE, "seq 2 is not above the last seen 2", seq=3, re=2)
    error[0] = wire.msgpack.packb({**wire.msgpack.unpackb(error[0]), "t_ns": 5_300_000})  # fixed clock for the doc
    # The same step and action as the reference client and server write them (fixed-width slots).
    step_fixed = [wire.step_header_layout(6).pack(2, T0, 25_000), step[1]]
    action_fixed = [wire.action_header_layout(3).pack(2, 2, 5_210_000, 21.5, 18.0, 1), action[1]]
    return {"hello": hello, "welcome": welcome, "step": step, "action": action, "error": error,
            "step-fixed": step_fixed, "action-fixed": action_fixed}


def hex_block(name: str, frames: list[bytes], width: int = 16) -> str:
    lines = [f"```hex {name}"]
    for i, frame in enumerate(frames):
        lines.append(f"frame {i} ({len(frame)} bytes)")
        for start in range(0, len(frame), width):
            chunk = frame[start : start + width]
            text = "".join(chr(b) if 32 <= b < 127 and chr(b) != "|" else "." for b in chunk)
            lines.append(f"{chunk.hex(' '):<{width * 3 - 1}} | {text}")
    lines.append("```")
    return "\n".join(lines)


def main() -> None:
    for name, frames in example_messages().items():
        print(hex_block(name, frames))
        print()


if __name__ == "__main__":
    main()
