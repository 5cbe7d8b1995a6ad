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
    "COLS_PER_CHUNK",
    "ROWS_PER_CHUNK",
    "SHARD_ATTR",
    "FeatureExtractor",
    "ImageSource",
    "extract_array",
    "extract_features",
    "extract_shard",
    "extract_to_h5",
    "shard_is_done",
    "shard_ranges",
    "write_virtual_features",
]

#: Attribute of a feature shard's part file: the key and the rows it holds, as JSON.
SHARD_ATTR = "berg_train_shard"

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


def shard_ranges(n: int, shard_size: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Image shards ``[(start, stop), ...]`` of about *shard_size* images.

    A shard starts on a multiple of the batch size (*batch_size*, or :data:`ROWS_PER_CHUNK`,
    which the CPU and GPU default batch sizes divide), so its forward passes see the same
    batches as :func:`extract_to_h5`'s over all images.
    """
    step = int(batch_size) if batch_size else ROWS_PER_CHUNK
    size = max(step, int(shard_size) // step * step)
    return [(start, min(n, start + size)) for start in range(0, n, size)]


class _Rows:
    """Images ``start:stop`` of an :class:`ImageSource`, as an image source of their own."""

    def __init__(self, images: ImageSource, start: int, stop: int) -> None:
        self.images, self.start, self.stop = images, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def load(self, indices: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        return self.images.load([self.start + int(i) for i in indices])


#: This process's feature extractors, by backbone identity and device (a worker builds each
#: backbone once, not once per shard).
_EXTRACTORS: dict[tuple[str, str, str], FeatureExtractor] = {}


def _extractor(backbone: Backbone | str, device: str) -> FeatureExtractor:
    spec = resolve_backbone(backbone)
    key = (spec.name, str(spec.identity), device)
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()  # one backbone in memory at a time
        _EXTRACTORS[key] = FeatureExtractor(spec, device)
    return _EXTRACTORS[key]


def shard_is_done(part: str | os.PathLike[str], key: str, start: int, stop: int) -> bool:
    """Whether *part* is a complete feature shard of *key* holding rows ``start:stop``."""
    import json

    import h5py

    try:
        with h5py.File(part, "r") as h5:
            found = json.loads(h5.attrs.get(SHARD_ATTR, "{}"))
    except (OSError, ValueError):
        return False
    return found == {"key": key, "start": start, "stop": stop}


def extract_shard(
    backbone: Backbone | str,
    images: ImageSource,
    start: int,
    stop: int,
    part: str | os.PathLike[str],
    key: str,
    device: str = "auto",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Features of images ``start:stop`` into the HDF5 file *part*, written whole or not at all.

    One task of a distributed extraction: the batches and the network are those of
    :func:`extract_to_h5`, the backbone is built once per process.

    Returns
    -------
    dict
        ``start``, ``stop``, ``part`` and ``dim`` (features per image).
    """
    import json

    import h5py

    from berg_core.atomic import atomic_outputs

    extractor = _extractor(backbone, device)
    rows = extract_array(
        extractor, _Rows(images, start, stop), batch_size=batch_size, show_progress=False
    )
    n, dim = rows.shape
    with atomic_outputs([part], force=True) as (tmp,), h5py.File(tmp, "w") as h5:
        h5.create_dataset(
            "features",
            data=rows,
            chunks=(min(n, ROWS_PER_CHUNK), min(dim, COLS_PER_CHUNK)),
        )
        h5.attrs[SHARD_ATTR] = json.dumps({"key": key, "start": start, "stop": stop})
    return {"start": start, "stop": stop, "part": os.fspath(part), "dim": int(dim)}


def write_virtual_features(
    path: str | os.PathLike[str],
    parts: Sequence[tuple[int, int, str | os.PathLike[str]]],
    dim: int,
    *,
    key: str,
    backbone: str,
) -> Path:
    """One ``features`` dataset over the shard files *parts* (an HDF5 virtual dataset), with
    the attributes of a finished :func:`extract_to_h5` file (``key``, ``done``), atomically.

    Reads of it return the parts' values: the PCA reads it as it reads
    :func:`extract_to_h5`'s file. The parts must stay where they are.
    """
    import h5py

    from berg_core.atomic import atomic_outputs

    path = Path(path)
    n = parts[-1][1] if parts else 0
    layout = h5py.VirtualLayout(shape=(n, dim), dtype="float32")
    for start, stop, part in parts:
        source = h5py.VirtualSource(os.fspath(part), "features", shape=(stop - start, dim))
        layout[start:stop] = source
    with atomic_outputs([path], force=True) as (tmp,), h5py.File(tmp, "w") as h5:
        h5.create_virtual_dataset("features", layout)
        h5.attrs["key"] = key
        h5.attrs["backbone"] = backbone
        h5.attrs["done"] = n
        h5.attrs["cols_per_chunk"] = min(dim, COLS_PER_CHUNK)
    return path


def chunk_cols(features: Any) -> int:
    """Columns per storage chunk of a features dataset: the PCA's block multiple."""
    stored = features.attrs.get("cols_per_chunk") if hasattr(features, "attrs") else None
    if stored is None and hasattr(features, "file"):
        stored = features.file.attrs.get("cols_per_chunk")
    if stored is not None:
        return int(stored)
    return int(features.chunks[1]) if getattr(features, "chunks", None) else 1


def _finished_rows(path: Path, key: str) -> int:
    """Rows a features file of *key* holds (0: none, another key, or unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("key") == key and "features" in h5:
                return int(h5.attrs.get("done", 0))
    except OSError:
        pass
    return 0


def extract_features(
    backbone: Backbone | str,
    images: ImageSource,
    path: str | os.PathLike[str],
    *,
    key: str,
    device: str = "auto",
    batch_size: int | None = None,
    show_progress: bool = True,
    runner: Any = None,
) -> Path:
    """The features file of a training run: :func:`extract_to_h5` here, or shards on a cluster.

    With a distributed *runner*, each image shard (:func:`shard_ranges`, of the runner's
    ``shard_size`` images) is a task
    (:func:`extract_shard`) writing its own part under ``<path stem>.parts/``; a part that is
    complete is not recomputed by a restarted run, and a partial one never counts (parts are
    written atomically and name their key and rows). *path* then becomes a virtual dataset over
    the parts (:func:`write_virtual_features`). A complete *path* of the same key, from either
    kind of run, is reused as it is.
    """
    path = Path(path)
    if runner is None or not runner.distributed:
        return extract_to_h5(
            backbone, images, path, key=key, device=device, batch_size=batch_size,
            show_progress=show_progress,
        )  # fmt: skip
    from tqdm.auto import tqdm

    n = len(images)
    if path.is_file() and _finished_rows(path, key) >= n:
        return path
    folder = path.with_name(path.stem + ".parts")
    folder.mkdir(parents=True, exist_ok=True)
    parts = [
        (start, stop, os.fspath((folder / f"part-{start:09d}-{stop:09d}.h5").resolve()))
        for start, stop in shard_ranges(n, getattr(runner, "shard_size", 256), batch_size)
    ]
    todo = [(s, e, part) for s, e, part in parts if not shard_is_done(part, key, s, e)]
    shared_images = runner.share(images)
    shared_backbone = runner.share(resolve_backbone(backbone))
    tasks = [
        (shared_backbone, shared_images, s, e, part, key, device, batch_size) for s, e, part in todo
    ]
    with tqdm(
        total=n, initial=n - sum(e - s for s, e, _ in todo), desc="Features", unit="img",
        disable=not show_progress,
    ) as bar:  # fmt: skip
        for result in runner.map(extract_shard, tasks, label="features"):
            bar.update(result["stop"] - result["start"])
    import h5py

    with h5py.File(parts[0][2], "r") as h5:
        dim = int(h5["features"].shape[1])
    return write_virtual_features(
        path, parts, dim, key=key, backbone=resolve_backbone(backbone).name
    )
