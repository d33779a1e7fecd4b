"""The pixel student's recorded steps on disk: joining rounds, reading a spread of rows, and bad files refused."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from policies.errors import PolicyError
from policies.pixel_data import PixelData


def random_steps(n: int, seed: int, episode_length: int = 100, side: int = 64) -> PixelData:
    rng = np.random.default_rng(seed)
    return PixelData({"cam": rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)}, rng.normal(size=(n, 7)).astype(np.float32),
                     rng.normal(size=(n, 5)).astype(np.float32), np.repeat(np.arange(n // episode_length, dtype=np.int32), episode_length),
                     rng.random(n // episode_length) < 0.5, rng.normal(size=(n, 3)).astype(np.float32))


def write_truncated_actions(path, actions: np.ndarray) -> None:
    """A steps file whose actions.npy header declares 10 rows of 5 and holds 4."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10, 5)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("actions.npy", header.getvalue() + actions[:4].tobytes())


def fields(data: PixelData) -> list[np.ndarray]:
    return [*data.images.values(), data.vectors, data.actions, data.episode, data.successes, data.privileged]


def test_joined_rounds_number_their_episodes_on_and_load_straight_into_one_array(tmp_path):
    rounds = [random_steps(600, seed=1, side=96), random_steps(200, seed=2, episode_length=50, side=96),
              random_steps(0, seed=3, side=96), random_steps(300, seed=4, side=96)]  # 30 MB of images
    for r, data in enumerate(rounds):
        data.save(tmp_path / f"round_{r}")
    chained = rounds[0]
    for more in rounds[1:]:
        chained = chained.extend(more)
    joined = PixelData.join(rounds)
    # Episode numbers restart in each round's file; joined, they follow on: 0-5, then 6-9, then 10-12.
    assert joined.episode.dtype == np.int32
    assert np.array_equal(np.unique(joined.episode), np.arange(13))
    assert np.array_equal(joined.episode[600:800], np.repeat(np.arange(6, 10), 50))
    tracemalloc.start()
    loaded = PixelData.load_joined([tmp_path / f"round_{r}" for r in range(4)])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for a, b, c in zip(fields(chained), fields(joined), fields(loaded)):
        assert a.dtype == b.dtype == c.dtype
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # Loading each round and joining them would hold every image twice; read into place, once and a chunk.
    images = loaded.images["cam"].nbytes
    assert peak < 1.25 * images, (peak, images)


def test_rounds_that_do_not_fit_together_or_are_cut_short_are_refused_naming_the_file(tmp_path):
    random_steps(200, seed=1).save(tmp_path / "round_0")
    random_steps(200, seed=2, side=32).save(tmp_path / "round_1")  # another camera size
    with pytest.raises(PolicyError, match=r"round_1/steps.npz: image.cam.npy holds uint8 rows of shape \(32, 32, 3\); "
                                          r".*round_0/steps.npz has uint8 rows of shape \(64, 64, 3\)"):
        PixelData.load_joined([tmp_path / "round_0", tmp_path / "round_1"])
    np.savez(tmp_path / "round_1" / "steps.npz", actions=np.zeros((3, 5), np.float32))
    with pytest.raises(PolicyError, match=r"round_1/steps.npz holds arrays \['actions'\]; .*round_0/steps.npz holds"):
        PixelData.load_joined([tmp_path / "round_0", tmp_path / "round_1"])
    for r in (0, 1):
        write_truncated_actions(tmp_path / f"round_{r}" / "steps.npz", np.zeros((10, 5), np.float32))
    with pytest.raises(PolicyError, match=r"round_0/steps.npz: actions.npy ends before the 10 rows its header declares"):
        PixelData.load_joined([tmp_path / "round_0", tmp_path / "round_1"])
    (tmp_path / "round_1" / "steps.npz").write_bytes(b"not a zip")
    with pytest.raises(PolicyError, match=r"round_1/steps.npz: not a file of recorded steps"):
        PixelData.load_joined([tmp_path / "round_0", tmp_path / "round_1"])


def test_the_export_samples_read_only_their_rows_of_a_round(tmp_path):
    n = 1500  # 18 MB of images; a real round holds 0.4-1.2 GB
    data = random_steps(n, seed=0)
    data.save(tmp_path / "round_0")
    tracemalloc.start()
    part, rows = PixelData.load_spread(tmp_path / "round_0", 50)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows.tolist() == np.linspace(0, n - 1, 50).round().astype(int).tolist()
    for got, full in [(part.images["cam"], data.images["cam"]), (part.vectors, data.vectors), (part.actions, data.actions),
                      (part.episode, data.episode), (part.privileged, data.privileged)]:
        assert np.array_equal(got, full[rows])
    assert np.array_equal(part.successes, data.successes)
    # np.load would hold the whole image array; seeking in the file reads (and drops) at most the gap between two rows.
    assert peak < data.images["cam"].nbytes / 4, peak
    assert len(PixelData.load_spread(tmp_path / "round_0", 5000)[1]) == n  # asked for more than there are: each once

    np.savez(tmp_path / "steps.npz", actions=np.asfortranarray(data.actions), successes=data.successes)
    with pytest.raises(PolicyError, match=r"steps.npz: actions.npy is not a C-ordered array"):
        PixelData.load_spread(tmp_path, 5)
    write_truncated_actions(tmp_path / "steps.npz", data.actions)
    with pytest.raises(PolicyError, match=r"steps.npz: actions.npy ends before row 4 of the 10 its header declares"):
        PixelData.load_spread(tmp_path, 3)
    (tmp_path / "steps.npz").write_bytes(b"not a zip")
    with pytest.raises(PolicyError, match=r"steps.npz: not a file of recorded steps"):
        PixelData.load_spread(tmp_path, 3)
