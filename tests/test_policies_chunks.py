"""Chunked policies: the labels behaviour cloning fits, the evaluation that executes chunks as the bridge's
executor does, and the bundle manifest's chunk field (the loader refuses what cannot be right)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from genba.gantry_bundle import export_gantry_chunk_bundle
from policies.bc import chunk_labels
from policies.bundle import BundleError, load_bundle
from policies.policy import ChunkedPolicy


def test_chunk_labels_are_the_next_actions_of_the_same_episode_with_the_last_repeated():
    actions = np.arange(6, dtype=np.float32).reshape(6, 1)  # episode 0: 0, 1, 2; episode 1: 3, 4, 5
    episode = np.array([0, 0, 0, 1, 1, 1])
    assert chunk_labels(actions, episode, 3).tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 5], [4, 5, 5], [5, 5, 5]]
    assert chunk_labels(actions, episode, 1).tolist() == actions.tolist()


class Counter:
    """A chunk policy whose chunk from the n-th observation is [10n, 10n + 1, ...]: shows which row runs when."""

    def __init__(self, length: int) -> None:
        self.length, self.calls = length, 0

    def reset(self) -> None:
        self.calls = 0

    def act(self, obs):
        self.calls += 1
        return np.arange(self.length, dtype=np.float32) + 10 * self.calls


def test_chunked_policy_acts_on_the_old_chunk_while_the_new_one_is_computed():
    policy = ChunkedPolicy(Counter(6), 6, execute=3)
    got = [float(policy.act(None)[0]) for _ in range(9)]
    # First chunk: rows 0-2; observed again at the third period, the new chunk runs from its row 1.
    assert got == [10, 11, 12, 21, 22, 23, 31, 32, 33]
    policy.reset()
    assert float(policy.act(None)[0]) == 10


@pytest.fixture(scope="module")
def chunk_bundle_dir(tmp_path_factory):
    return export_gantry_chunk_bundle(tmp_path_factory.mktemp("chunk") / "gantry-chunk", chunk=3)


def test_a_chunked_bundle_declares_its_chunk_and_acts_with_its_first_action(chunk_bundle_dir):
    bundle = load_bundle(chunk_bundle_dir)
    assert bundle.manifest["chunk"] == {"length": 3, "period_s": 0.05} and bundle.chunk_length == 3
    obs = np.array([0.1, 0.2, 0.3, -0.1, 0.0, 0.2], np.float32)
    chunk = bundle.act_chunk(obs)
    assert chunk.shape == (3, 3) and bundle.act(obs).tobytes() == chunk[0].tobytes()
    assert np.allclose(load_bundle(chunk_bundle_dir, backend="torchscript").act_chunk(obs), chunk, atol=1e-5)


@pytest.mark.parametrize("chunk, fragment", [
    ({"length": 0, "period_s": 0.05}, "chunk.length must be an integer >= 1"),
    ({"length": 2.0, "period_s": 0.05}, "chunk.length must be an integer >= 1"),
    ({"length": 3, "period_s": 0.1}, "chunk.period_s 0.1 is not the control period"),
    ([3, 0.05], "chunk must be a mapping"),
    ({"length": 2, "period_s": 0.05}, "returns actions of shape (9,), manifest says (3 x chunk.length 2,)"),
])
def test_the_loader_refuses_a_chunk_that_cannot_be_right(chunk_bundle_dir, tmp_path, chunk, fragment):
    copy = shutil.copytree(chunk_bundle_dir, tmp_path / "b")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["chunk"] = chunk
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert fragment in str(info.value)


def test_eval_runs_a_chunked_bundle_as_the_executor_does(chunk_bundle_dir):
    from policies.policy import load_policy

    loaded = load_policy(chunk_bundle_dir)
    bundle = load_bundle(chunk_bundle_dir)
    first, second = (np.array([0.1 * k, 0.2, 0.3, -0.1, 0.0, 0.2], np.float32) for k in (1, 2))
    loaded.policy.reset()
    # Chunk of 3, re-observed after 1 action (replan_after(3)): period 0 runs the first chunk's row 0, period 1
    # the chunk observed at period 0 from its row 1.
    a0, a1 = loaded.policy.act(first), loaded.policy.act(second)
    assert a0.tobytes() == bundle.act_chunk(first)[0].tobytes()
    assert a1.tobytes() == bundle.act_chunk(first)[1].tobytes()
