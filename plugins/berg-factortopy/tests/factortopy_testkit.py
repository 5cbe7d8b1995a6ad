"""Helpers of berg-factortopy's tests: a tiny backbone, synthetic data with a known answer.

The synthetic subject: every vertex's response is a random linear function of the standardised
local tokens of one layer of :class:`TinyBackbone`, sampled (bilinearly) at one location of the
layer's map, plus Gaussian noise. Layer and location are smooth functions of the vertex's
position on the sphere (rings around a pole choose the layer, the position in the cap chooses the
location), as FactorTopy assumes; the right hemisphere uses the rings in reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from berg_factortopy.backbones import ImageTransform
from berg_factortopy.sphere import icosphere, write_sphere
from PIL import Image
from torch import nn
from torch.nn import functional

from berg_core.torchkit import Preprocessor

SIZE = 32
CHANNELS = 16
LAYERS = ("conv1", "conv2", "conv3")
CAP = 0.6  # vertices with z > CAP form the trained cortical patch
CAP_RADIUS = (1 - CAP**2) ** 0.5
NOISE = 0.5  # noise std for signals of unit variance: best possible R² = 1 / 1.25 = 0.8


class TinyBackbone(nn.Module):
    """Three stride-2 convolutions (16, 8, 4 pixel maps), seeded: identical in every process."""

    def __init__(self, seed: int = 3) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(3, CHANNELS, 3, stride=2, padding=1),
                    nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
                    nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
                ]
            )
        self.transform = ImageTransform(SIZE)
        self.eval()

    def get_tokens(self, x: torch.Tensor):
        local, global_ = {}, {}
        for name, conv in zip(LAYERS, self.convs, strict=True):
            x = torch.relu(conv(x))
            local[name], global_[name] = x, x.mean(dim=(2, 3))
        return local, global_


class NotABackbone:
    """Has no get_tokens."""


def smooth_images(n: int, seed: int) -> np.ndarray:
    """``(n, 3, SIZE, SIZE)`` uint8 images with spatially smooth content."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.normal(size=(n, 3, 6, 6)).astype(np.float32))
    images = functional.interpolate(low, size=SIZE, mode="bicubic", align_corners=False)
    images = images + 0.3 * torch.from_numpy(rng.normal(size=images.shape).astype(np.float32))
    return np.clip(128 + 50 * images.numpy(), 0, 255).astype(np.uint8)


def write_spheres(folder: Path) -> Path:
    """``lh.sphere`` and ``rh.sphere``: the order-7 icosphere (163,842 vertices)."""
    vertices, faces = icosphere(7)
    for hemi in ("lh", "rh"):
        write_sphere(folder / f"{hemi}.sphere", vertices, faces)
    return folder


@dataclass
class Truth:
    """What generated the synthetic responses, per hemisphere."""

    vertices: dict[str, np.ndarray]  # fsaverage indices, ascending
    layer: dict[str, np.ndarray]  # index into LAYERS
    location: dict[str, np.ndarray]  # (V, 2) in [-1, 1]
    signal: dict[str, np.ndarray]  # (N, V) noiseless responses
    responses: dict[str, np.ndarray]  # (N, V) signal + noise


def tokens_of(images: np.ndarray) -> dict[str, torch.Tensor]:
    """Local tokens of *images*, preprocessed as training and encoding do."""
    backbone = TinyBackbone()
    preprocessor = Preprocessor(backbone.transform, torch.device("cpu"))
    with torch.no_grad():
        local, _ = backbone.get_tokens(preprocessor(images))
    return {k: v.clone() for k, v in local.items()}


def make_truth(images: np.ndarray, per_hemisphere: int, seed: int) -> Truth:
    """Synthetic responses of *per_hemisphere* cap vertices in each hemisphere."""
    rng = np.random.default_rng(seed)
    sphere, _ = icosphere(7)
    cap = np.flatnonzero(sphere[:, 2] > CAP)
    local = tokens_of(images)
    for name, t in local.items():  # standardise each channel over images and positions
        local[name] = (t - t.mean(dim=(0, 2, 3), keepdim=True)) / t.std(dim=(0, 2, 3), keepdim=True)
    truth = Truth({}, {}, {}, {}, {})
    for hemi in ("lh", "rh"):
        vertices = np.sort(rng.choice(cap, per_hemisphere, replace=False))
        xyz = sphere[vertices]
        ring = np.minimum((np.hypot(xyz[:, 0], xyz[:, 1]) / CAP_RADIUS * 3).astype(int), 2)
        layer = ring if hemi == "lh" else 2 - ring
        location = (0.7 * xyz[:, :2] / CAP_RADIUS).astype(np.float32)
        weights = rng.normal(size=(per_hemisphere, CHANNELS)).astype(np.float32)
        signal = np.zeros((len(images), per_hemisphere), dtype=np.float32)
        for index, name in enumerate(LAYERS):
            cols = np.flatnonzero(layer == index)
            grid = torch.from_numpy(location[cols]).view(1, -1, 1, 2)
            grid = grid.expand(len(images), -1, -1, -1)
            sampled = functional.grid_sample(
                local[name], grid, mode="bilinear", padding_mode="border", align_corners=False
            ).squeeze(3)
            signal[:, cols] = torch.einsum(
                "ncv,vc->nv", sampled, torch.from_numpy(weights[cols])
            ).numpy()
        signal = (signal - signal.mean(0)) / signal.std(0)
        noise = NOISE * rng.normal(size=signal.shape).astype(np.float32)
        truth.vertices[hemi], truth.layer[hemi] = vertices, layer
        truth.location[hemi], truth.signal[hemi] = location, signal
        truth.responses[hemi] = signal + noise
    return truth


def write_algonauts(root: Path, images: np.ndarray, truth: Truth) -> Path:
    """Write an Algonauts 2023 subject folder holding *images* and *truth*'s responses."""
    fmri = root / "training_split" / "training_fmri"
    folder = root / "training_split" / "training_images"
    masks = root / "roi_masks"
    for path in (fmri, folder, masks):
        path.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        name = f"train-{i + 1:04d}_nsd-{i:05d}.png"
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / name)
    for hemi in ("lh", "rh"):
        np.save(fmri / f"{hemi}_training_fmri.npy", truth.responses[hemi])
        mask = np.zeros(163_842, dtype=np.int64)
        mask[truth.vertices[hemi]] = 1
        np.save(masks / f"{hemi}.all-vertices_fsaverage_space.npy", mask)
    return root


def write_nsd_metadata(
    berg_dir: Path, subject: int, rois: dict[str, dict[str, np.ndarray]]
) -> Path:
    """The subject's NSD metadata file (of the alexnet_untrained model) with ROI tables *rois*."""
    folder = (
        berg_dir
        / "encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-alexnet_untrained"
        / "metadata"
    )
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "fmri": {
            "lh_ncsnr": np.zeros(163_842, dtype=np.float32),
            "rh_ncsnr": np.zeros(163_842, dtype=np.float32),
            "lh_fsaverage_rois": rois["lh"],
            "rh_fsaverage_rois": rois["rh"],
        },
        "encoding_models": {"lh_r2_nsdcore": np.zeros(163_842, dtype=np.float32)},
    }
    path = folder / f"metadata_subject-{subject:02d}.npy"
    np.save(path, metadata, allow_pickle=True)
    return path
