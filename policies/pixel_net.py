"""The student network of pixel policies: camera images and the robot's own readings in, actions out.

Inputs are what a cell PC has: uint8 images (B, H, W, C) as the camera gives them, one per image key,
and float32 vectors (B, P) of the robot's readings (proprio, and a goal task's goals). Preprocessing is
part of the network (uint8 -> [0, 1], HWC -> CHW, vector normalisation), so an exported graph takes
the raw arrays and nothing outside it can preprocess differently.

Encoder: a small conv stack ending in a spatial softmax (Levine et al., 2016, "End-to-End Training of
Deep Visuomotor Policies"): each feature map becomes the expected image position of its activation,
which is what a pick needs (where the part is), plus each map's maximum (whether and what it sees).
Optionally (`grid`) also each map's mean over a coarse grid of the image: what is where. A maximum says
that something is seen somewhere; the part in the jaws sits in one place of the wrist view, and whether
it is a cube or a cylinder must be read there, not from a neighbour elsewhere in the image.
Images of one size share the encoder, stacked on channels (an RGB image and its depth: 4 channels).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from policies.errors import PolicyError
from policies.rundir import RunError
from policies.snapshot import PIXEL_MODEL, Snapshot, damaged_file
from sim.env import VECTOR_KEYS


class PixelNetError(PolicyError):
    """Image inputs the network cannot take (no image, images of different sizes, a bad shape)."""


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) -> (B, 3C): per channel the softmax-weighted mean x and y in [-1, 1], then its max."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))  # (H*W, 2)
        # Learned sharpness: at initialisation the maps are too flat for the softmax to point anywhere.
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c = features.shape[0], features.shape[1]
        flat = features.reshape(b, c, -1)
        keypoints = torch.softmax(flat / self.log_temperature.exp(), dim=-1) @ self.grid  # (B, C, 2)
        return torch.cat([keypoints.reshape(b, 2 * c), flat.amax(dim=-1)], dim=1)


class GridMeans(nn.Module):
    """(B, C, H, W) -> (B, C * cells**2): each map's mean over a cells x cells grid of equal squares, centred
    (the few rows and columns that do not divide evenly are left out: a plain average pool, which every
    exporter takes as it is)."""

    def __init__(self, height: int, width: int, cells: int) -> None:
        super().__init__()
        self.size_h, self.size_w = height // cells, width // cells
        self.top, self.left = (height - self.size_h * cells) // 2, (width - self.size_w * cells) // 2
        self.cells = cells

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h, w, top, left = self.size_h * self.cells, self.size_w * self.cells, self.top, self.left
        cropped = features[:, :, top:top + h, left:left + w]
        return nn.functional.avg_pool2d(cropped, (self.size_h, self.size_w)).flatten(1)


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def camera_groups(image_keys: Sequence[str]) -> list[list[int]]:
    """Input indices per camera: an RGB image and its depth (`<name>`, `<name>_depth`, sim.pixel_obs) share an encoder."""
    cameras: dict[str, list[int]] = {}
    for i, key in enumerate(image_keys):
        cameras.setdefault(key[:-len("_depth")] if key.endswith("_depth") else key, []).append(i)
    return list(cameras.values())


class PixelPolicyNet(nn.Module):
    """forward(*images_uint8, vector_float32) -> actions in [-1, 1], (B, act_dim).

    One encoder per camera (`groups`: the input indices each one stacks on channels; default: all inputs
    together), their features concatenated with the normalised readings, then the MLP head.
    """

    def __init__(self, image_shapes: Sequence[Sequence[int]], vector_dim: int, act_dim: int,
                 vector_mean: np.ndarray, vector_std: np.ndarray, channels: Sequence[int] = (32, 32, 32),
                 hidden: Sequence[int] = (256, 256), aux_dim: int = 0, groups: Sequence[Sequence[int]] | None = None,
                 grid: int = 0) -> None:
        super().__init__()
        shapes = [tuple(int(v) for v in s) for s in image_shapes]
        if not shapes:
            raise PixelNetError("a pixel policy needs at least one image input")
        if any(len(s) != 3 for s in shapes):
            raise PixelNetError(f"image inputs must be (H, W, C); got {shapes}")
        groups = [list(range(len(shapes)))] if groups is None else [[int(i) for i in g] for g in groups]
        if sorted(i for g in groups for i in g) != list(range(len(shapes))):
            raise PixelNetError(f"camera groups {groups} must use each of the {len(shapes)} image inputs once")
        self.image_shapes, self.groups = shapes, groups
        self.vector_dim, self.act_dim, self.grid = int(vector_dim), int(act_dim), int(grid)
        # pools: each encoder's spatial softmax; grids: its grid means (empty without a grid).
        self.encoders, self.pools, self.grids = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        width_in = self.vector_dim
        for group in groups:
            sizes = {shapes[i][:2] for i in group}
            if len(sizes) != 1:
                raise PixelNetError(f"the images of one camera must be of one size; got {[shapes[i] for i in group]}")
            encoder, pool, grid_means, n_features = _encoder(sizes.pop(), sum(shapes[i][2] for i in group), channels, self.grid)
            self.encoders.append(encoder)
            self.pools.append(pool)
            if grid_means is not None:
                self.grids.append(grid_means)
            width_in += n_features
        self.register_buffer("vector_mean", torch.as_tensor(np.asarray(vector_mean, np.float32)).reshape(1, -1))
        self.register_buffer("vector_std", torch.as_tensor(np.asarray(vector_std, np.float32)).reshape(1, -1))
        # Training only (not in forward, so not exported): the teacher's privileged task features, regressed
        # from what the student sees, make the encoder learn where the parts are before the actions do.
        self.aux_dim = int(aux_dim)
        self.aux_head = nn.Linear(width_in, self.aux_dim) if self.aux_dim else None
        head: list[nn.Module] = []
        for h in hidden:
            head += [nn.Linear(width_in, h), nn.ReLU()]
            width_in = h
        head += [nn.Linear(width_in, self.act_dim), nn.Tanh()]
        self.head = nn.Sequential(*head)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs: each image uint8 (B, H, W, C) in image_shapes order, then the vector float32 (B, P)."""
        *images, vector = inputs
        return self.act_on_floats(self.images_to_float(images), vector)

    def images_to_float(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 (B, H, W, C) images -> per camera one float (B, C, H, W) in [0, 1]: the network's preprocessing."""
        return [torch.cat([images[i].permute(0, 3, 1, 2).float() for i in group], dim=1) / 255.0 for group in self.groups]

    def act_on_floats(self, pixels: Sequence[torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
        """The network after preprocessing: training augments `pixels` (per camera, [0, 1]) in between."""
        return self.head(self.features(pixels, vector))

    def features(self, pixels: Sequence[torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
        """What the action head (and the training-only auxiliary head) reads: keypoints, maxima, readings."""
        maps = [encoder(p) for encoder, p in zip(self.encoders, pixels)]
        seen = [pool(m) for pool, m in zip(self.pools, maps)] + [grid(m) for grid, m in zip(self.grids, maps)]
        return torch.cat([*seen, (vector - self.vector_mean) / self.vector_std], dim=1)

    def colour_channels(self) -> list[torch.Tensor]:
        """Per camera, which stacked channels are colour (augmentation jitters those only)."""
        return [colour_channels([self.image_shapes[i] for i in group]) for group in self.groups]

    def config(self) -> dict:
        """What rebuilds the architecture (weights and normalisation come from the state dict)."""
        return {"image_shapes": [list(s) for s in self.image_shapes], "vector_dim": self.vector_dim, "act_dim": self.act_dim,
                "channels": [m.out_channels for m in self.encoders[0] if isinstance(m, nn.Conv2d)],
                "hidden": [m.out_features for m in self.head if isinstance(m, nn.Linear)][:-1], "aux_dim": self.aux_dim,
                "groups": self.groups, "grid": self.grid}

    @classmethod
    def from_config(cls, config: dict) -> "PixelPolicyNet":
        zeros, ones = np.zeros(config["vector_dim"]), np.ones(config["vector_dim"])
        return cls(config["image_shapes"], config["vector_dim"], config["act_dim"], zeros, ones,
                   config["channels"], config["hidden"], config.get("aux_dim", 0), config.get("groups"), config.get("grid", 0))


def _encoder(size: tuple[int, int], c_in: int, channels: Sequence[int],
             grid: int = 0) -> tuple[nn.Module, SpatialSoftmax, GridMeans | None, int]:
    """A conv stack on (c_in, H, W) images, its spatial softmax, its grid means (None without a grid), and how
    many features they give together."""
    height, width = size
    layers: list[nn.Module] = []
    for i, c_out in enumerate(channels):
        kernel, stride = (5, 2) if i == 0 else (3, 2) if i == 1 else (3, 1)
        layers += [nn.Conv2d(c_in, c_out, kernel, stride), nn.ReLU()]
        height, width, c_in = conv_out(height, kernel, stride), conv_out(width, kernel, stride), c_out
    layers.pop()  # the last maps go to the softmax signed: a ReLU would flatten everything below zero
    if height < 2 or width < 2:
        raise PixelNetError(f"images of {size} are too small for the encoder (>= 21 x 21 pixels)")
    if grid > min(height, width):
        raise PixelNetError(f"a grid of {grid} x {grid} cells does not fit the encoder's {height} x {width} maps of {size} images")
    grid_means = GridMeans(height, width, grid) if grid else None
    return nn.Sequential(*layers), SpatialSoftmax(height, width), grid_means, (3 + grid * grid) * c_in


def colour_channels(image_shapes: Sequence[Sequence[int]]) -> torch.Tensor:
    """(sum C,) bool: which stacked channels are colour (a 3-channel image's), not depth."""
    return torch.cat([torch.full((int(s[2]),), int(s[2]) == 3) for s in image_shapes])


def augment(pixels: torch.Tensor, rng: torch.Generator, shift: int, brightness: float, contrast: float,
            colour: torch.Tensor, tint: float = 0.0) -> torch.Tensor:
    """Training-time augmentation of (B, C, H, W) floats in [0, 1]: random shifts of up to `shift` pixels
    (pad by edge replication, crop back; DrQ, Kostrikov et al. 2020) and, on the colour channels only (depth
    keeps its metric meaning), brightness (added, +-brightness) and contrast (about the mean, 1 +- contrast). `tint`: each colour
    channel's own gain, 1 +- tint (a light's colour temperature, or a camera's white balance).
    """
    b, _, h, w = pixels.shape
    out = pixels
    if shift > 0:
        padded = nn.functional.pad(pixels, (shift, shift, shift, shift), mode="replicate")
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=rng).tolist()
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=rng).tolist()
        # A slice per sample: for a batch of 64, several times cheaper than one gather with index tensors.
        out = torch.stack([padded[i, :, y:y + h, x:x + w] for i, (x, y) in enumerate(zip(dx, dy))])
    if brightness > 0 or contrast > 0 or tint > 0:
        shape = (b, 1, 1, 1)
        add = (torch.rand(shape, generator=rng) * 2 - 1).to(pixels.device) * brightness
        scale = 1 + (torch.rand(shape, generator=rng) * 2 - 1).to(pixels.device) * contrast
        mask = colour.to(pixels.device)
        mean = out.mean(dim=(2, 3), keepdim=True)[:, mask].mean(dim=1, keepdim=True)  # (B, 1, 1, 1), over colour
        gains = 1 + (torch.rand((b, int(mask.sum()), 1, 1), generator=rng) * 2 - 1).to(pixels.device) * tint
        # One multiply-add over every channel: (x - mean) * scale * gain + mean * gain + add on colour,
        # x * 1 + 0 on depth (so depth comes out exactly as it went in).
        k = torch.ones((b, out.shape[1], 1, 1), device=pixels.device)
        offset = torch.zeros_like(k)
        k[:, mask] = scale * gains
        offset[:, mask] = mean * gains * (1 - scale) + add
        out = torch.addcmul(offset, out, k).clamp_(0.0, 1.0)
    return out


def split_keys(space) -> tuple[list[str], list[str]]:
    """(image keys, vector keys) of a pixels observation space (sim.env: obs_mode pixels), in the network's order."""
    vectors = [k for k in VECTOR_KEYS if k in space.spaces]
    return [k for k in space.spaces if k not in vectors], vectors


class PixelPolicy:
    """A student network acting on single pixels observations (policies.policy.Policy)."""

    def __init__(self, net: PixelPolicyNet, image_keys: Sequence[str], vector_keys: Sequence[str], device: str = "cpu") -> None:
        self.net, self.image_keys, self.vector_keys, self.device = net.eval(), list(image_keys), list(vector_keys), device

    def reset(self) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        images = [torch.from_numpy(np.ascontiguousarray(obs[k])[None]).to(self.device) for k in self.image_keys]
        vector = np.concatenate([np.asarray(obs[k], np.float32) for k in self.vector_keys])[None]
        with torch.inference_mode():
            action = self.net(*images, torch.from_numpy(vector).to(self.device))
        return action[0].float().cpu().numpy()


def load_pixel_net(snapshot: Snapshot, device: str = "cpu") -> PixelPolicyNet:
    """The pixel student of a snapshot (policies.snapshot: pixel_policy.pt), in eval mode."""
    if not snapshot.is_pixel:
        raise RunError(f"{snapshot.path}: not a pixel policy snapshot ({PIXEL_MODEL} missing)")
    with damaged_file(snapshot.path / PIXEL_MODEL):
        saved = torch.load(snapshot.path / PIXEL_MODEL, map_location=device, weights_only=True)  # tensors and plain data only
    net = PixelPolicyNet.from_config(saved["config"])
    net.load_state_dict(saved["state_dict"])
    return net.to(device).eval()


def load_pixel_policy(snapshot: Snapshot, device: str = "cpu") -> PixelPolicy:
    """The student acting on its cell's pixels observations, with the keys its training run recorded."""
    keys = snapshot.state.get("inputs") or {}
    if not keys.get("images") or "vector" not in keys:
        raise RunError(f"{snapshot.path}: state.json does not name the pixel policy's inputs (inputs.images, inputs.vector)")
    return PixelPolicy(load_pixel_net(snapshot, device), keys["images"], keys["vector"], device)
