"""Image features from a backbone, into memory or, resumably, into an HDF5 file.

Batches go through berg-core's torch blocks, as at inference: :class:`~berg_core.torchkit.
Preprocessor` (the weights' own transform, on uint8 tensors) and
:class:`~berg_core.torchkit.NodeFeatureExtractor` (node outputs flattened and concatenated).
Images are read one batch ahead on a background thread (:class:`~berg_train.prefetch.
Prefetcher`), so reading overlaps the forward pass. The HDF5 cache holds one float32 row per image
in chunks of 64 rows x 4,096 features, so the PCA can read column blocks of all rows; the number
of finished rows is stored with the data after every 64 rows, and an interrupted extraction
continues from there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from berg_train.backbones import Backbone, resolve_backbone
from berg_train.prefetch import Prefetcher

__all__ = [
    "ROWS_PER_CHUNK",
    "FeatureExtractor",
    "ImageSource",
    "extract_array",
    "extract_to_h5",
]

#: Rows per HDF5 chunk (and per flush of the cache).
ROWS_PER_CHUNK = 64
#: Features per HDF5 chunk.
COLS_PER_CHUNK = 4096


class ImageSource(Protocol):
    """Images addressed by position: what :func:`extract_to_h5` reads."""

    def __len__(self) -> int:
        """Number of images."""

    def load(self, indices: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """uint8 images ``(B, 3, H, W)`` (or a list of ``(3, H, W)``) at *indices*."""


class FeatureExtractor:
    """Preprocess + backbone + feature nodes on one device; call it on uint8 image batches.

    Parameters
    ----------
    backbone : Backbone or str
        See :func:`berg_train.backbones.resolve_backbone`.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    """

    def __init__(self, backbone: Backbone | str, device: str = "auto") -> None:
        import torch

        from berg_core.torchkit import NodeFeatureExtractor, Preprocessor, resolve_device

        self.backbone = resolve_backbone(backbone)
        self.device = resolve_device(device)
        spec = self.backbone
        self.preprocessor = Preprocessor(
            spec.transform(), self.device, channels_last=spec.channels_last
        )
        module = spec.build().eval()
        self._module: Any = None
        self._nodes: Any = None
        if spec.nodes:
            self._nodes = NodeFeatureExtractor(
                module,
                spec.nodes,
                self.device,
                channels_last=spec.channels_last,
                input_size=spec.input_size,
            )
            self.feature_dim = self._nodes.feature_dim
        else:
            self._module = module.to(self.device)
            for parameter in self._module.parameters():
                parameter.requires_grad_(False)
            probe = torch.zeros(1, 3, spec.input_size, spec.input_size, device=self.device)
            with torch.inference_mode():
                self.feature_dim = int(torch.flatten(self._module(probe), 1).shape[1])

    def __call__(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """``(B, D)`` float32 features of a batch of uint8 images (a new array)."""
        import torch

        with torch.inference_mode():
            x = self.preprocessor(images)
            if self._nodes is not None:
                features = self._nodes(x)
            else:
                features = torch.flatten(self._module(x), 1)
            return features.float().cpu().numpy().copy()


def _batch_size(extractor: FeatureExtractor, batch_size: int | None) -> int:
    if batch_size:
        return int(batch_size)
    return ROWS_PER_CHUNK // 2 if extractor.device.type == "cpu" else ROWS_PER_CHUNK


def _batches(images: ImageSource, start: int, stop: int, step: int) -> Prefetcher:
    """Image batches ``start:stop`` in steps of *step*, each loaded ahead on a worker thread."""
    ranges = [range(first, min(stop, first + step)) for first in range(start, stop, step)]
    return Prefetcher(images.load, ranges, depth=1)


def extract_array(
    backbone: Backbone | str | FeatureExtractor,
    images: ImageSource,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    show_progress: bool = True,
    desc: str = "Features",
) -> np.ndarray:
    """Features of every image of *images*, in memory: ``(N, D)`` float32."""
    from tqdm.auto import tqdm

    extractor = (
        backbone if isinstance(backbone, FeatureExtractor) else FeatureExtractor(backbone, device)
    )
    n = len(images)
    out = np.empty((n, extractor.feature_dim), dtype=np.float32)
    step = _batch_size(extractor, batch_size)
    with (
        tqdm(total=n, desc=desc, unit="img", disable=not show_progress) as bar,
        _batches(images, 0, n, step) as batches,
    ):
        for rows, batch in batches:
            out[rows.start : rows.stop] = extractor(batch)
            bar.update(len(rows))
    return out


def extract_to_h5(
    backbone: Backbone | str,
    images: ImageSource,
    path: str | os.PathLike[str],
    *,
    key: str,
    device: str = "auto",
    batch_size: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Extract features of all *images* into ``path`` (dataset ``features``), resumably.

    Parameters
    ----------
    backbone : Backbone or str
    images : ImageSource
    path : path-like
        HDF5 file. If it exists with the same *key* and is incomplete, extraction continues after
        its last finished rows; with another key it is started over.
    key : str
        Identifies backbone and image list (stored as the file's ``key`` attribute).
    device, batch_size, show_progress
        As for :class:`FeatureExtractor`.

    Returns
    -------
    Path
        *path*, complete (attribute ``done`` equals the number of images).
    """
    import h5py
    from tqdm.auto import tqdm

    path = Path(path)
    n = len(images)
    done = 0
    if path.is_file():
        try:
            with h5py.File(path, "r") as h5:
                if h5.attrs.get("key") == key and "features" in h5:
                    done = int(h5.attrs.get("done", 0))
        except OSError:  # a file cut short mid-write: start over
            done = 0
        if done >= n:
            return path
        if done == 0:
            path.unlink()
    extractor = FeatureExtractor(backbone, device)
    dim = extractor.feature_dim
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+" if done else "w"
    step = _batch_size(extractor, batch_size)
    with (
        h5py.File(path, mode, rdcc_nbytes=64 * 1024 * 1024) as h5,
        tqdm(total=n, initial=done, desc="Features", unit="img", disable=not show_progress) as bar,
        _batches(images, done, n, step) as batches,
    ):
        if not done:
            h5.attrs["key"] = key
            h5.attrs["backbone"] = extractor.backbone.name
            h5.attrs["done"] = 0
            h5.create_dataset(
                "features",
                shape=(n, dim),
                dtype="float32",
                chunks=(min(n, ROWS_PER_CHUNK), min(dim, COLS_PER_CHUNK)),
            )
        dataset = h5["features"]
        if dataset.shape != (n, dim):
            raise RuntimeError(f"{path}: features have shape {dataset.shape}, expected {(n, dim)}")
        buffer = np.empty((ROWS_PER_CHUNK, dim), dtype=np.float32)
        block_start = done
        filled = 0
        for batch_rows, batch in batches:
            rows = extractor(batch)
            offset = 0
            while offset < rows.shape[0]:
                take = min(rows.shape[0] - offset, ROWS_PER_CHUNK - filled)
                buffer[filled : filled + take] = rows[offset : offset + take]
                filled += take
                offset += take
                if filled == ROWS_PER_CHUNK:
                    dataset[block_start : block_start + filled] = buffer[:filled]
                    block_start += filled
                    filled = 0
                    h5.attrs["done"] = block_start
                    h5.flush()
            bar.update(len(batch_rows))
        if filled:
            dataset[block_start : block_start + filled] = buffer[:filled]
            h5.attrs["done"] = block_start + filled
    return path
