"""The spec hash (bridge/spec.py): the text a controller builds from its own cell description, the doc's
worked example, and agreement with the hash the exporter writes into a real bundle."""

from __future__ import annotations

import ctypes
import hashlib
import re
from pathlib import Path

import pytest

from bridge import gantry
from bridge.errors import BridgeError
from bridge.spec import SpecError, spec_hash, spec_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "bridge-protocol.md"
GANTRY = gantry.feature_spec()


def doc_example() -> tuple[str, str]:
    """The spec text block of the doc's worked example and the sha256 stated under it."""
    doc = DOC.read_text()
    text = re.search(r"```text spec-gantry\n(.*?)```", doc, flags=re.S).group(1)
    stated = re.search(r"```text spec-gantry\n.*?```\s*\n\s*Its sha256[^\n]*?`([0-9a-f]{64})`", doc, flags=re.S).group(1)
    return text, stated


def test_doc_worked_example_is_the_gantrys_spec_text_and_hash():
    text, stated = doc_example()
    assert text.endswith("\n") and "\r" not in text and len(text.splitlines()) == 7
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == stated
    assert spec_text(GANTRY["observation"], GANTRY["action"], GANTRY["control_hz"]) == text
    assert spec_hash(GANTRY["observation"], GANTRY["action"], GANTRY["control_hz"]) == stated


def test_doc_images_example_is_the_shipped_bin_sort_pixel_cells_images_block():
    """The doc's images block is what today's bin-sort camera policy sends (it once showed two of its four cameras)."""
    import sim

    block = re.search(r"```text spec-bin-sort-pixels\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    env = sim.make_env("bin-sort", obs_mode="pixels")
    try:
        spec = env.unwrapped.feature_spec()
    finally:
        env.close()
    text = spec_text(spec["observation"], spec["action"], spec["control_hz"])
    assert block.startswith("images ") and block in text
    assert text.index(block) == text.index("\nimages ") + 1 and text[text.index(block) + len(block):].startswith("action ")


def test_an_exported_bundle_carries_the_hash_a_controller_computes(bundle):
    _, stated = doc_example()
    m = bundle.manifest
    assert bundle.spec_hash == m["spec_hash"] == stated
    # From the manifest's sections (bounds, meaning, layout and all) the same text comes out.
    assert spec_text(m["observation"], m["action"], m["control_hz"]) == doc_example()[0]


def test_text_lines_and_number_formats():
    observation = {"features": [{"name": "q", "size": 2, "unit": "rad"}, {"name": "flag", "size": 1, "unit": ""},
                                {"name": "count", "size": 1}]}
    action = {"kind": "absolute", "features": [
        {"name": "a", "size": 3, "unit": "m", "scale": [0.1, 1e10, 1 / 3]},
        {"name": "b", "size": 2, "unit": "1", "scale": 2},
        {"name": "c", "size": 2, "unit": "1", "scale": [-0.5]},
        {"name": "d", "size": 1, "unit": "m/s"},
    ]}
    assert spec_text(observation, action, 125).splitlines() == [
        "genba-spec 1",
        "control_hz 125",
        "observation 4",
        "q 2 rad",
        "flag 1 -",
        "count 1 -",
        "action absolute 8",
        "a 3 m 0.1 1e+10 0.333333333",
        "b 2 1 2",
        "c 2 1 -0.5",
        "d 1 m/s -",
    ]
    assert spec_text(observation, action, None).splitlines()[1] == "control_hz -"
    assert spec_text(observation, action, 125) == spec_text(observation, action, 125.0)
    assert spec_text(observation, action, 0.5).splitlines()[1] == "control_hz 0.5"


@pytest.mark.parametrize("value", [20.0, 0.025, 1 / 3, 1e10, 1e-5, 123456789.0, 1234567891.0, -0.0, 5e-324, 0.1 + 0.2,
                                   2.5e-3, 100.0, 1e16, 0.6000000238418579])
def test_numbers_are_written_as_c_printf_writes_them(value):
    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(64)
    libc.snprintf(buf, 64, b"%.9g", ctypes.c_double(value))
    action = {"kind": "k", "features": [{"name": "a", "size": 1, "unit": "m", "scale": value}]}
    assert spec_text([], action, None).splitlines()[-1] == f"a 1 m {buf.value.decode()}"


def test_only_names_sizes_units_kind_scale_and_rate_count():
    obs, act = GANTRY["observation"], GANTRY["action"]
    base = spec_hash(obs, act, 20.0)
    bounded = [{**f, "low": -9.0, "high": 9.0, "extra": "x"} for f in obs]
    assert spec_hash({"features": bounded, "dim": 6, "layout": {"type": "flat"}}, {**act, "meaning": "other", "low": [0] * 3}, 20) == base
    assert spec_hash(list(reversed(obs)), act, 20.0) != base  # order is the vector's layout
    assert spec_hash([{**obs[0], "unit": "mm"}, obs[1]], act, 20.0) != base
    assert spec_hash(obs, {**act, "kind": "ee_delta"}, 20.0) != base
    assert spec_hash(obs, {**act, "features": [{**act["features"][0], "scale": [0.05] * 3}]}, 20.0) != base
    assert spec_hash(obs, act, 25.0) != base


@pytest.mark.parametrize(
    "observation, action, control_hz, message",
    [
        ([{"name": "joint position", "size": 3, "unit": "m"}], {"kind": "k", "features": []}, 20,
         "observation feature 0 name 'joint position' contains whitespace"),
        ([{"name": "", "size": 3, "unit": "m"}], {"kind": "k", "features": []}, 20, "observation feature 0 name must not be empty"),
        ([{"name": "q", "size": 3, "unit": "m s"}], {"kind": "k", "features": []}, 20, "feature 'q' unit 'm s' contains whitespace"),
        ([{"name": "q", "size": 0, "unit": "m"}], {"kind": "k", "features": []}, 20, "feature 'q': size must be at least 1"),
        ([{"name": "q", "size": 3.0, "unit": "m"}], {"kind": "k", "features": []}, 20, "feature 'q': size must be an integer, got 3.0"),
        ([{"name": "q", "size": True, "unit": "m"}], {"kind": "k", "features": []}, 20, "size must be an integer, got True"),
        ([], {"kind": "joint\tdelta", "features": []}, 20, "action kind 'joint\\tdelta' contains whitespace"),
        ([], {"features": []}, 20, "action kind must be a string, got None"),
        ([], {"kind": "k", "features": [{"name": "a", "size": 3, "unit": "m", "scale": [1, 2]}]}, 20,
         "action feature 'a': scale has 2 values; give one or 3"),
        ([], {"kind": "k", "features": [{"name": "a", "size": 1, "unit": "m", "scale": float("nan")}]}, 20,
         "action feature 'a' scale must be finite"),
        ([], {"kind": "k", "features": [{"name": "a", "size": 1, "unit": "m", "scale": "0.5"}]}, 20,
         "action feature 'a' scale must be a number, got '0.5'"),
        ([], {"kind": "k", "features": []}, 0, "control_hz must be positive, got 0"),
        ([], [{"name": "a", "size": 1}], 20, "action must be a mapping with 'kind' and 'features'"),
        ("q 3 m", {"kind": "k", "features": []}, 20, "observation must be a mapping with a 'features' list"),
    ],
)
def test_descriptions_without_a_spec_text_raise_spec_error(observation, action, control_hz, message):
    with pytest.raises(SpecError) as info:
        spec_hash(observation, action, control_hz)
    assert message in str(info.value)
    assert isinstance(info.value, BridgeError)


@pytest.mark.parametrize("env_id", __import__("sim").ENV_IDS)
def test_every_shipped_cells_features_write_a_spec_text(env_id):
    """Every registered cell's observation and action can go into a bundle (peg-insert's torque unit once had a space)."""
    import gymnasium as gym

    env = gym.make(env_id)
    try:
        spec = env.unwrapped.feature_spec()
        text = spec_text(spec["observation"], spec["action"], spec["control_hz"])
        assert all(f"{feature['name']} " in text for feature in spec["observation"]["features"])
    finally:
        env.close()
