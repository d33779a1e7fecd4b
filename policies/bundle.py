"""Load and run a policy bundle with numpy + onnxruntime (or TorchScript), never SB3.

    from policies.bundle import load_bundle, BundleError
    b = load_bundle("bundles/reach", backend="onnx", device="cpu")
    action = b.act(obs)          # float32 (obs_dim,) or (B, obs_dim) -> (act_dim,) or (B, act_dim)

A pixel bundle (format 3, `b.images` not empty) acts on an observation dict: its uint8 camera images,
(H, W, C) or (B, H, W, C), and the vector keys (policies.bundle_images).

Before any weights are read, the manifest is checked (format, version, required keys, spec hash) and
every file's sha256 is compared with the manifest, so a tampered, truncated or incompatible bundle is
refused with a BundleError that says what is wrong. The format is described in docs/bundle-format.md.

On the CPU the ONNX graph runs on onnxruntime. `executor="kernel"` opts in to the hand-written fast path
for plain-MLP graphs (policies/graph_executors.py: a compiled C kernel, or numpy calls), used only when
it reproduces onnxruntime on 1,000 observations; docs/benchmarks.md gives what each costs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from policies.bundle_format import BACKEND_FILES, TORCHSCRIPT_IO, VECTOR_INPUT, BundleError, chunk_length, read_manifest
from policies.bundle_images import ImageInput, check_graph_inputs, split_observation, zero_inputs
from policies.features import flatten_obs
from policies.graph_executors import fastest_matching_executor, with_output_bounds

EXECUTORS = ("onnxruntime", "kernel")
ONNX_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


def default_backend(device: str) -> str:
    """ONNX Runtime for the CPU; TorchScript on CUDA (the GPU path batches concurrent controllers)."""
    return "torchscript" if device == "cuda" else "onnx"


class Bundle:
    """A verified, loaded policy (policies.policy.Policy): `act(obs) -> action`, deterministic and stateless."""

    def __init__(self, path: Path, manifest: dict, backend: str, device: str, run):
        self.path, self.manifest, self.backend, self.device = path, manifest, backend, device
        self.name: str = str(manifest["name"])
        self.spec_hash: str = str(manifest["spec_hash"])
        self.obs_dim: int = int(manifest["observation"]["dim"])
        self.act_dim: int = int(manifest["action"]["dim"])
        self.control_hz: float = float(manifest["control_hz"]) if manifest["control_hz"] is not None else float("nan")
        self._order = tuple(manifest["observation"].get("layout", {}).get("order", ()))
        # A pixel bundle's camera inputs, in graph-input order; empty for a bundle that takes one vector.
        self.images: tuple[ImageInput, ...] = tuple(ImageInput.of(e) for e in manifest["observation"].get("images") or ())
        self._low = np.array([-np.inf if v is None else v for v in manifest["action"]["low"]], dtype=np.float32)
        self._high = np.array([np.inf if v is None else v for v in manifest["action"]["high"]], dtype=np.float32)
        # A chunked graph gives chunk_length actions per observation, flat: action i at [i * act_dim, (i + 1) * act_dim).
        self.chunk_length: int = chunk_length(manifest, path)
        self._low, self._high = np.tile(self._low, self.chunk_length), np.tile(self._high, self.chunk_length)
        # The graph already keeps actions in [low, high]; the clamp again guards float edge cases (a
        # squashed action rescaled to [low, high] may round past a bound). Native: inside the kernel.
        self._run = _bounded_pixels(run, self._low, self._high) if self.images else with_output_bounds(run, self._low, self._high)
        self.executor: str = getattr(run, "executor", backend)  # what computes the graph: native, numpy, onnxruntime, torchscript

    def act(self, obs: Any) -> np.ndarray:
        """Action(s) for observation(s): float32 (obs_dim,) -> (act_dim,), (B, obs_dim) -> (B, act_dim).

        A Dict observation (goal-conditioned env) is flattened in the manifest's layout order first.
        A pixel bundle takes a dict: each image key uint8 (H, W, C) -> (act_dim,), or (B, H, W, C) -> (B, act_dim),
        and the vector keys, (P,) or (B, P).
        """
        if self.images:
            x, images, single = split_observation(self.name, self.images, self._order, self.obs_dim, obs)
            action = self.act_batch_unchecked(x, images)[:, :self.act_dim]
            return action[0] if single else action
        if isinstance(obs, Mapping):
            obs = flatten_obs(obs, self._order)
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise BundleError(f"bundle {self.name!r} expects observations of shape ({self.obs_dim},) or (B, {self.obs_dim}), got {np.shape(obs)}")
        if not np.all(np.isfinite(x)):
            raise BundleError(f"bundle {self.name!r} got a non-finite observation (NaN or inf); refusing to act on it")
        # A chunk's first action is the one for this control period: what a single-action caller gets.
        action = self.act_batch_unchecked(np.ascontiguousarray(x))[:, :self.act_dim]
        return action[0] if single else action

    def act_chunk(self, obs: Any) -> np.ndarray:
        """The chunk(s): (obs_dim,) -> (chunk_length, act_dim), (B, obs_dim) -> (B, chunk_length, act_dim)."""
        if self.images:
            x, images, single = split_observation(self.name, self.images, self._order, self.obs_dim, obs)
            chunks = self.act_batch_unchecked(x, images).reshape(len(x), self.chunk_length, self.act_dim)
            return chunks[0] if single else chunks
        x = np.asarray(flatten_obs(obs, self._order) if isinstance(obs, Mapping) else obs, dtype=np.float32)
        single = x.ndim == 1
        self.act(x)  # the input checks
        chunks = self.act_batch_unchecked(np.ascontiguousarray(x[None] if single else x))
        chunks = chunks.reshape(len(chunks), self.chunk_length, self.act_dim)
        return chunks[0] if single else chunks

    def act_batch_unchecked(self, x: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """act() without its input checks, the whole chunk: (B, obs_dim) -> (B, chunk_length * act_dim).

        x must be float32, C-contiguous, (B, obs_dim) and finite; a pixel bundle also takes `images`:
        {key: uint8 C-contiguous (B, H, W, C)} for every key in `images`.
        For callers that have checked that already (the bridge server validates every observation it
        receives): the checks cost as much as a small MLP's forward pass.
        """
        if images is None and not self.images:
            action = self._run(x)
        elif self.images and images is not None:
            action = self._run(x, images)
        else:
            raise BundleError(f"bundle {self.name!r} takes " + (f"camera images {[i.key for i in self.images]}: pass "
                                                                 "images={key: uint8 (B, H, W, C)}" if self.images else
                                                                 "no camera images: call it without images"))
        return action if type(action) is np.ndarray and action.dtype == np.float32 else np.asarray(action, dtype=np.float32)

    def reset(self) -> None:
        """No state to reset (bundles are feed-forward); present so callers can treat policies uniformly."""

    def __repr__(self) -> str:
        images = f", images={[i.key for i in self.images]}" if self.images else ""
        return (f"Bundle({self.name!r}, backend={self.backend}, executor={self.executor}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}{images})")


def _bounded_pixels(run, low: np.ndarray, high: np.ndarray):
    """run(x, images) clamped per column (the state path's with_output_bounds, for a graph with image inputs)."""
    def bounded(x: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.minimum(np.maximum(run(x, images), low), high)

    bounded.executor = getattr(run, "executor", None)
    return bounded


def load_bundle(path: str | Path, backend: str = "onnx", device: str = "cpu", threads: int = 1,
                executor: str = "onnxruntime") -> Bundle:
    """Verify and load the bundle at `path`.

    backend: "onnx" | "torchscript"; device: "cpu" | "cuda" | "auto"; executor (ONNX on the CPU):
    "onnxruntime" (default) | "kernel" (the opt-in fast path, where the graph is a plain MLP).
    """
    if backend not in BACKEND_FILES:
        raise BundleError(f"unknown backend {backend!r}; use one of {sorted(BACKEND_FILES)}")
    if executor not in EXECUTORS:
        raise BundleError(f"unknown executor {executor!r}; use one of {list(EXECUTORS)}")
    if device not in ("cpu", "cuda", "auto"):
        raise BundleError(f"unknown device {device!r}; use cpu, cuda or auto")
    root = Path(path)
    manifest = read_manifest(root)
    fname = BACKEND_FILES[backend]
    if fname not in manifest["files"]:
        raise BundleError(f"{root}: bundle has no {backend} model ({fname} not in manifest files)")
    pixels = bool(manifest["observation"].get("images"))
    if backend == "onnx":
        run, device, sizes = _load_onnx(root / fname, device, threads, executor == "kernel" and not pixels, pixels)
    else:
        run, device, sizes = _load_torchscript(root / fname, device, threads)
    bundle = Bundle(root, manifest, backend, device, run)
    _check_io(bundle, sizes)
    return bundle


def _load_onnx(file: Path, device: str, threads: int, fast_path: bool, pixels: bool):
    import onnxruntime as ort  # imported on use: a TorchScript-only deployment need not have it

    available = ort.get_available_providers()
    cuda_ok = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda_ok:
        raise BundleError(f"device 'cuda' asked for, but onnxruntime has no CUDA provider here ({available}); "
                          "install onnxruntime-gpu or use device='cpu'")
    use_cuda = device == "cuda" or (device == "auto" and cuda_ok)
    providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    # Small MLPs: one thread avoids contention with the control loop and other processes.
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, threads
    try:
        session = ort.InferenceSession(str(file), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise BundleError(f"{file}: onnxruntime cannot load the graph ({exc})") from None
    inputs, out = session.get_inputs(), session.get_outputs()[0]
    declared = [{"name": i.name, "shape": list(i.shape[1:]), "dtype": ONNX_TYPES.get(i.type, i.type)} for i in inputs]
    inp = next((i for i in inputs if i.name == VECTOR_INPUT), inputs[0]) if pixels else inputs[0]
    sizes = {"obs_dim": inp.shape[-1], "act_dim": out.shape[-1], "inputs": declared}
    output_names, input_name = [out.name], inp.name

    def run_ort(x: np.ndarray) -> np.ndarray:
        return session.run(output_names, {input_name: x})[0]

    def run_ort_pixels(x: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        return session.run(output_names, {**images, input_name: x})[0]

    if pixels:
        run_ort_pixels.executor = "onnxruntime"
        return run_ort_pixels, ("cuda" if use_cuda else "cpu"), sizes

    run_ort.executor = "onnxruntime"

    run = run_ort
    if fast_path and not use_cuda and isinstance(sizes["obs_dim"], int):
        run = fastest_matching_executor(file, run_ort, sizes["obs_dim"]) or run_ort
    return run, ("cuda" if use_cuda else "cpu"), sizes


def _load_torchscript(file: Path, device: str, threads: int):
    import torch  # imported on use: the ONNX path runs without torch

    torch.set_num_threads(threads)
    cuda_ok = torch.cuda.is_available()
    if device == "cuda" and not cuda_ok:
        raise BundleError("device 'cuda' asked for, but torch sees no CUDA device here; use device='cpu'")
    dev = "cuda" if device == "cuda" or (device == "auto" and cuda_ok) else "cpu"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: TorchScript is our stated format
            extra = {TORCHSCRIPT_IO: ""}
            module = torch.jit.load(str(file), map_location=dev, _extra_files=extra).eval()
        sizes = json.loads(extra[TORCHSCRIPT_IO] or "{}")
    except Exception as exc:  # torch raises RuntimeError/ValueError variants for bad archives
        raise BundleError(f"{file}: TorchScript cannot load the module ({exc})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(dev)).cpu().numpy()

    if sizes.get("inputs") is None:
        return run, dev, sizes
    order = [i.get("name") for i in sizes["inputs"]]  # the traced forward's positional order

    def run_pixels(x: np.ndarray, images: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            args = [torch.from_numpy(x if name == VECTOR_INPUT else images[name]).to(dev) for name in order]
            return module(*args).cpu().numpy()

    return run_pixels, dev, sizes


def _check_io(bundle: Bundle, sizes: dict) -> None:
    """The graph's recorded input/output sizes and one zero observation must agree with the manifest."""
    where = f"{bundle.path}: the {bundle.backend} model"
    declared = sizes.get("inputs")
    if bundle.images:
        check_graph_inputs(where, bundle.images, bundle.obs_dim, declared)
    elif declared is not None and len(declared) != 1:
        raise BundleError(f"{where} takes inputs {[i.get('name') for i in declared]}; the manifest describes one observation vector")
    if sizes.get("obs_dim") != bundle.obs_dim:
        raise BundleError(f"{where} does not accept observations of size {bundle.obs_dim} from the manifest "
                          f"(it takes {sizes.get('obs_dim')})")
    width = bundle.act_dim * bundle.chunk_length
    chunk = f" x chunk.length {bundle.chunk_length}" if bundle.chunk_length > 1 else ""
    if sizes.get("act_dim") != width:  # before running it: a chunk length that does not fit fails there obscurely
        raise BundleError(f"{where} returns actions of shape ({sizes.get('act_dim')},), manifest says ({bundle.act_dim}{chunk},)")
    try:
        out = np.asarray(bundle._run(*zero_inputs(bundle.images, bundle.obs_dim)) if bundle.images else
                         bundle._run(np.zeros((1, bundle.obs_dim), dtype=np.float32)))
    except Exception as exc:  # the runtime's own error types
        raise BundleError(f"{where} fails on a zero observation ({exc})") from None
    if out.shape != (1, width):
        raise BundleError(f"{where} returns actions of shape {out.shape[1:]}, manifest says ({bundle.act_dim}{chunk},)")
