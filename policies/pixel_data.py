"""The pixel student's data: the expert's labelled steps with uint8 camera images (policies.pixel_bc).

Images stay uint8 (a float copy of 20k 84x84 RGB-D frames would be 2 GB). Alongside each step: the
robot's readings, the expert's action, and the task's privileged features the expert read (the
student's auxiliary targets).
"""

from __future__ import annotations

import contextlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from policies.demos import labelled_steps
from policies.errors import PolicyError
from policies.pixel_net import split_keys
from policies.rundir import DATA_DIR, atomic_dir, recover_dir

# In a run directory: data/round_<r>/steps.npz, each round's recorded steps.


def round_data_dir(run_path: Path, r: int) -> Path:
    return Path(run_path) / DATA_DIR / f"round_{r}"


def recorded_round(run_path: Path, r: int) -> Path | None:
    """Round r's data directory if the run finished writing it (or the version a crash left), else None."""
    found = recover_dir(round_data_dir(run_path, r))
    return found if found is not None and (found / "steps.npz").is_file() else None


def last_recorded_round(run_path: Path) -> Path | None:
    """The data directory of the last round a run finished writing (rounds count up from 0), or None."""
    found, r = None, 0
    while (d := recorded_round(run_path, r)) is not None:
        found, r = d, r + 1
    return found


@dataclass
class PixelData:
    """Labelled steps: uint8 images per key, float32 vectors (the robot's readings), the expert's actions."""

    images: dict[str, np.ndarray]  # key -> (N, H, W, C) uint8
    vectors: np.ndarray  # (N, P) float32
    actions: np.ndarray  # (N, A) float32, the expert's labels
    episode: np.ndarray  # (N,) int32, contiguous runs
    successes: np.ndarray  # (E,) bool, whether each episode succeeded
    privileged: np.ndarray  # (N, F) float32, the task's state features the expert knew (auxiliary targets)

    def __len__(self) -> int:
        return len(self.actions)

    def observations(self, rows: np.ndarray, space) -> dict[str, np.ndarray]:
        """The recorded observations at `rows` by key of the pixels observation space `space`: the vectors split
        back into the keys record_pixels joined. PolicyError when the data were recorded with other inputs."""
        image_keys, vector_keys = split_keys(space)
        sizes = [int(np.prod(space[k].shape)) for k in vector_keys]
        if set(image_keys) != set(self.images) or sum(sizes) != self.vectors.shape[1]:
            raise PolicyError(f"the recorded steps hold cameras {sorted(self.images)} and {self.vectors.shape[1]} readings; "
                              f"the observation has cameras {sorted(image_keys)} and {sum(sizes)} readings")
        obs = {k: self.images[k][rows] for k in image_keys}
        for k, part in zip(vector_keys, np.split(self.vectors[rows], np.cumsum(sizes)[:-1], axis=1)):
            obs[k] = part.reshape(len(part), *space[k].shape)
        return obs

    def extend(self, other: "PixelData") -> "PixelData":
        return PixelData.join([self, other])

    @staticmethod
    def join(parts: Sequence["PixelData"]) -> "PixelData":
        """The parts' steps in order, each part's episodes numbered on from the last part's; each array copied once."""
        cat = np.concatenate
        offsets = _episode_offsets([len(p.successes) for p in parts])
        return PixelData({k: cat([p.images[k] for p in parts]) for k in parts[0].images}, cat([p.vectors for p in parts]),
                         cat([p.actions for p in parts]), cat([p.episode + o for p, o in zip(parts, offsets)]),
                         cat([p.successes for p in parts]), cat([p.privileged for p in parts]))

    def save(self, path: Path) -> None:
        with atomic_dir(path) as tmp:  # a directory, so a crash mid-write leaves nothing that looks complete
            np.savez(tmp / "steps.npz", vectors=self.vectors, actions=self.actions, episode=self.episode,
                     successes=self.successes, privileged=self.privileged, **{f"image.{k}": v for k, v in self.images.items()})

    @staticmethod
    def load(path: Path) -> "PixelData":
        with np.load(path / "steps.npz", allow_pickle=False) as z:
            return PixelData._from_arrays(z)

    @staticmethod
    def _from_arrays(arrays: Mapping[str, np.ndarray]) -> "PixelData":
        """From the arrays by the names save() gives them."""
        images = {k[len("image."):]: arrays[k] for k in arrays if k.startswith("image.")}
        return PixelData(images, arrays["vectors"], arrays["actions"], arrays["episode"], arrays["successes"], arrays["privileged"])

    @staticmethod
    def load_spread(path: Path, n: int) -> tuple["PixelData", np.ndarray]:
        """Up to n steps spread evenly over the recorded ones, and their row numbers, reading only those rows
        from disk: a round's file holds 0.4-1.2 GB of images, which load() would bring into memory whole."""
        with _open_steps(path) as z:
            total = _npy_header(z, "actions")[0][0]
            rows = np.unique(np.linspace(0, total - 1, n).round().astype(np.int64)) if total else np.zeros(0, np.int64)
            arrays = {key: _npy_rows(z, key, rows) for key in _keys(z) if key != "successes"}  # per episode, not per step: whole
            with z.open("successes.npy") as f:
                arrays["successes"] = np.lib.format.read_array(f, allow_pickle=False)
        return PixelData._from_arrays(arrays), rows

    @staticmethod
    def load_joined(paths: Sequence[Path]) -> "PixelData":
        """Several rounds' steps as one (as join() would make of their load()s), each array read from disk straight
        into its place: loading the rounds and then joining them would hold every image twice (3.3 GB at the peak
        for a two-round bin-sort run's 1.6 GB)."""
        with contextlib.ExitStack() as stack:
            zips = [stack.enter_context(_open_steps(p)) for p in paths]
            keys = _keys(zips[0])
            for z in zips[1:]:
                if _keys(z) != keys:
                    raise PolicyError(f"{z.filename} holds arrays {sorted(_keys(z))}; {zips[0].filename} holds {sorted(keys)}")
            arrays, counts = {}, {}
            for key in keys:
                arrays[key], counts[key] = _npy_joined(zips, key)
        starts = np.cumsum([0] + counts["episode"]).tolist()  # each round's first row
        for a, b, offset in zip(starts, starts[1:], _episode_offsets(counts["successes"])):
            arrays["episode"][a:b] += offset
        return PixelData._from_arrays(arrays)


def _episode_offsets(episode_counts: Sequence[int]) -> list[int]:
    """What joining adds to each part's episode numbers (which start at 0 in each part): the episodes of the parts
    before it. Python ints, so an int32 episode array stays int32."""
    return np.cumsum([0, *episode_counts[:-1]]).tolist()


def _open_steps(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path / "steps.npz")
    except zipfile.BadZipFile:
        raise PolicyError(f"{path / 'steps.npz'}: not a file of recorded steps (not a zip archive)") from None


def _keys(z: zipfile.ZipFile) -> list[str]:
    return [name.removesuffix(".npy") for name in z.namelist()]


def _read_npy_header(f, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header at f's position (numpy's public readers); f is left at the data."""
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise PolicyError(f"{where} has .npy format version {version}, which this reader does not know")
    shape, fortran_order, dtype = read(f)
    if fortran_order or dtype.hasobject:
        raise PolicyError(f"{where} is not a C-ordered array of plain values")
    return shape, dtype


def _npy_header(z: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of one array np.savez stored in `z`."""
    with z.open(f"{key}.npy") as f:
        return (*_read_npy_header(f, f"{z.filename}: {key}.npy"), f.tell())


def _npy_rows(z: zipfile.ZipFile, key: str, rows: np.ndarray) -> np.ndarray:
    """Rows (ascending) of one stored array, read one by one: seeking forward in a zip member reads past the rows
    between in chunks and drops them, so memory holds the rows asked for, not the array."""
    shape, dtype, start = _npy_header(z, key)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    out = np.empty((len(rows), *shape[1:]), dtype)
    with z.open(f"{key}.npy") as f:
        for i, row in enumerate(rows.tolist()):
            f.seek(start + row * row_bytes)
            data = f.read(row_bytes)
            if len(data) != row_bytes:
                raise PolicyError(f"{z.filename}: {key}.npy ends before row {row} of the {shape[0]} its header declares")
            out[i] = np.frombuffer(data, dtype).reshape(shape[1:])
    return out


def _npy_joined(zips: Sequence[zipfile.ZipFile], key: str, chunk: int = 1 << 20) -> tuple[np.ndarray, list[int]]:
    """One stored array of every zip, joined along the first axis, and each zip's row count. The bytes are read
    `chunk` at a time into the joined array: the only copy made besides it is one chunk."""
    headers = []
    for z in zips:
        shape, dtype, _ = _npy_header(z, key)
        if headers and (shape[1:], dtype) != (headers[0][0][1:], headers[0][1]):
            raise PolicyError(f"{z.filename}: {key}.npy holds {dtype} rows of shape {shape[1:]}; "
                              f"{zips[0].filename} has {headers[0][1]} rows of shape {headers[0][0][1:]}")
        headers.append((shape, dtype))
    counts = [shape[0] for shape, _ in headers]
    out = np.empty((sum(counts), *headers[0][0][1:]), headers[0][1])
    start = 0
    for z, n in zip(zips, counts):
        view = memoryview(out[start:start + n].reshape(-1).view(np.uint8))
        with z.open(f"{key}.npy") as f:
            _read_npy_header(f, f"{z.filename}: {key}.npy")
            for at in range(0, len(view), chunk):
                part = view[at:at + chunk]
                if f.readinto(part) != len(part):
                    raise PolicyError(f"{z.filename}: {key}.npy ends before the {n} rows its header declares")
        start += n
    return out, counts


def record_pixels(env, driver, expert, n_episodes: int, seed: int, noise: float, on_episode=None) -> PixelData:
    """Episode i on seed `seed + i`, its DART noise drawn from that seed too: any split of the episodes
    among processes (policies.pixel_collect) records the same episodes (to the last digits: PyBullet's
    solver warm start differs between a fresh env and one that ran earlier episodes)."""
    image_keys, vector_keys = split_keys(env.observation_space)
    images: dict[str, list] = {k: [] for k in image_keys}
    vectors, actions, episode, successes, privileged = [], [], [], [], []
    task = env.unwrapped.task
    for ep in range(n_episodes):
        for step in labelled_steps(env, driver, expert, 1, seed + ep, lambda _, ok: successes.append(ok), noise,
                                   privileged=task.observation):
            privileged.append(step.privileged)
            for k in image_keys:
                images[k].append(step.obs[k])
            vectors.append(np.concatenate([step.obs[k] for k in vector_keys]))
            actions.append(step.label)
            episode.append(ep)
        if on_episode is not None:
            on_episode(ep, successes[-1])
    return PixelData({k: np.stack(v) for k, v in images.items()}, np.asarray(vectors, np.float32),
                     np.asarray(actions, np.float32), np.asarray(episode, np.int32), np.asarray(successes, bool),
                     np.asarray(privileged, np.float32))
