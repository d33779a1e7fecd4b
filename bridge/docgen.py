"""The byte-level examples in docs/bridge-protocol.md, produced by the real encoder.

    python -m bridge.docgen     # prints the ```hex blocks to paste into the doc

tests/test_bridge_protocol.py checks that the doc's bytes equal these and still decode, and that the
welcome's observation/action sections are those of a real exported gantry bundle.
"""

from __future__ import annotations

import numpy as np

from bridge import gantry
from bridge import images as cameras
from bridge import protocol as wire
from bridge.limits import SafetyLimits
from bridge.protocol import ErrorCode
from bridge.spec import spec_hash, spec_text

T0 = 1_000_000_000  # sender monotonic ns (any host-local value)
V = wire.PROTOCOL_VERSION

# The observation and action sections of the gantry bundle's manifest (genba/gantry_bundle.py exports
# it), as a welcome carries them. The bounds are the env's float32 space bounds, hence 0.6000000238418579.
GANTRY_OBSERVATION = {
    "dim": 6, "dtype": "float32",
    "features": [
        {"name": "joint_position", "size": 3, "unit": "m", "low": [-0.5, -0.5, -0.6000000238418579],
         "high": [0.5, 0.5, 0.6000000238418579]},
        {"name": "goal_tool_position", "size": 3, "unit": "m", "low": [-1.0, -1.0, -1.0], "high": [1.0, 1.0, 1.0]},
    ],
    "layout": {"type": "flat"},
}
GANTRY_ACTION = {
    "dim": 3, "dtype": "float32", "kind": "joint_delta", "low": [-1.0, -1.0, -1.0], "high": [1.0, 1.0, 1.0],
    "features": [{"name": "joint_delta", "size": 3, "unit": "m", "low": [-1.0, -1.0, -1.0], "high": [1.0, 1.0, 1.0],
                  "scale": [0.025, 0.025, 0.025]}],
    "meaning": "delta of each axis position target per control period: value * scale metres",
}


def gantry_spec_text() -> str:
    """The spec text of the gantry cell, from its own description (bridge/gantry.py feature_spec)."""
    spec = gantry.feature_spec()
    return spec_text(spec["observation"], spec["action"], spec["control_hz"])


def gantry_spec_hash() -> str:
    spec = gantry.feature_spec()
    return spec_hash(spec["observation"], spec["action"], spec["control_hz"])


def example_messages() -> dict[str, list[bytes]]:
    limits = SafetyLimits.from_robot_spec(gantry.robot_spec()).to_robot_spec()
    hash_ = gantry_spec_hash()
    hello = wire.encode({
        "v": V, "type": "hello", "seq": 1, "t_ns": T0, "bundle": "gantry-reach", "spec_hash": hash_,
        "client": "cell-7", "robot": {"model": "gantry-3", "joint_names": ["x", "y", "z"]},
    })
    welcome = wire.encode({
        "v": V, "type": "welcome", "seq": 1, "t_ns": 5_000_000, "re": 1, "bundle": "gantry-reach",
        "spec_hash": hash_, "session": "9c1d2e3f4a5b6c7d", "obs_dim": 6, "act_dim": 3, "control_hz": 20.0,
        "action_kind": "joint_delta", "action_low": [-1.0] * 3, "action_high": [1.0] * 3,
        "observation": GANTRY_OBSERVATION, "action": GANTRY_ACTION, "limits": limits,
        "max_message_bytes": wire.DEFAULT_MAX_MESSAGE_BYTES, "protocol": list(wire.SUPPORTED_VERSIONS),
    })
    obs = np.array([0.0, 0.0, 0.3, 0.2, -0.1, 0.2], dtype=np.float32)
    step = wire.encode({"v": V, "type": "step", "seq": 2, "t_ns": T0, "deadline_us": 25_000}, [obs])
    action = wire.encode(
        {"v": V, "type": "action", "seq": 2, "re": 2, "t_ns": 5_210_000, "queue_us": 21.5, "infer_us": 18.0, "batch": 1},
        [np.array([0.5, -0.25, -1.0], dtype=np.float32)],
    )
    error = wire.error_frames(ErrorCode.STALE_SEQUENCE, "seq 2 is not above the last seen 2", seq=3, re=2)
    error[0] = wire.msgpack.packb({**wire.msgpack.unpackb(error[0]), "t_ns": 5_300_000})  # fixed clock for the doc
    # The same step and action as the reference client and server write them (fixed-width slots).
    step_fixed = [wire.step_header_layout(6).pack(2, T0, 25_000), step[1]]
    action_fixed = [wire.action_header_layout(3).pack(2, 2, 5_210_000, 21.5, 18.0, 1), action[1]]
    # A chunk request (observation taken 2 ms before sending, at most 4 actions) and its chunk of 2 x 3
    # actions from a bundle whose chunk.length is 2 (a reply never has more rows than either asks or has).
    step_chunk = wire.encode({"v": V, "type": "step", "seq": 4, "t_ns": T0 + 50_000_000, "deadline_us": 100_000, "chunk": 4,
                              "obs_t_ns": T0 + 48_000_000}, [obs])
    action_chunk = wire.encode(
        {"v": V, "type": "action", "seq": 5, "re": 4, "t_ns": 5_270_000, "queue_us": 20.0, "infer_us": 19.5, "batch": 1,
         "chunk_start_ns": T0 + 48_000_000, "period_us": 50_000.0, "obs_age_us": 2_020.0},
        [np.array([[0.5, -0.25, -1.0], [0.25, 0.0, -0.5]], dtype=np.float32)],
    )
    # A pixel bundle's step: the same observation plus one 2 x 2 RGB camera "cam", raw, as the reference
    # client writes it (red, green / blue, white).
    frame = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    cam = cameras.ImageSpec("cam", (2, 2, 3), "rgb", "RGB")
    step_image = wire.encode({"v": V, "type": "step", "seq": 6, "t_ns": T0 + 100_000_000, "deadline_us": 25_000,
                              "images": cameras.encode_frames({"cam": frame}, [cam])}, [obs])
    return {"hello": hello, "welcome": welcome, "step": step, "action": action, "error": error,
            "step-fixed": step_fixed, "action-fixed": action_fixed, "step-chunk": step_chunk, "action-chunk": action_chunk,
            "step-image": step_image}


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
    print("```text spec-gantry")
    print(gantry_spec_text(), end="")
    print("```")
    print(f"sha256: `{gantry_spec_hash()}`")
    print()
    for name, frames in example_messages().items():
        print(hex_block(name, frames))
        print()


if __name__ == "__main__":
    main()
