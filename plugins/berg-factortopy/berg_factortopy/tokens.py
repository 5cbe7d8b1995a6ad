"""Backbone tokens of the training images: computed once and cached, or computed on every step.

The backbone is frozen, so its tokens for an image never change during training. A token cache
runs it once per image and keeps every layer's local and global tokens:

* in RAM (:class:`MemoryTokens`) when they fit - a 12-layer ViT-B/16 needs 12 x 197 x 768 values
  per image, 3.6 MB in float16, 36 GB for 10,000 images;
* else in an HDF5 file on disk (:class:`HDF5Tokens`), one chunk per image and layer, written under
  a temporary name and renamed when complete; a later run (``--resume``) made from the same images
  and backbone reuses the file.

Without a cache (:class:`LiveTokens`) the backbone runs on every training step.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from berg_core import InvalidParameterError
from berg_core.stimulus import Stimulus
from berg_factortopy.backbones import Tokens, check_tokens

__all__ = [
    "HDF5Tokens",
    "LiveTokens",
    "MemoryTokens",
    "TokenStore",
    "available_memory",
    "build_token_store",
    "images_fingerprint",
]

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


#: Where Linux reports memory; module attributes so that tests can point them at fake files.
MEMINFO_PATH = Path("/proc/meminfo")
CGROUP_DIR = Path("/sys/fs/cgroup")
CGROUP_SELF = Path("/proc/self/cgroup")


def available_memory() -> int | None:
    """Bytes of memory this process can use now without swapping, or ``None`` if unknown.

    On Linux this is ``MemAvailable`` of ``/proc/meminfo`` (free memory plus the page cache and
    other memory the kernel can reclaim), lowered to what the cgroup v2 memory limit leaves
    (``memory.max`` minus ``memory.current``) when the process runs under one, as in containers.
    Elsewhere (macOS) it is the free pages ``sysconf`` reports.
    """
    available = _meminfo_available()
    if available is None:
        try:
            available = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    headroom = _cgroup_headroom()
    return available if headroom is None else min(available, headroom)


def _meminfo_available() -> int | None:
    """``MemAvailable`` of :data:`MEMINFO_PATH` in bytes, or ``None`` if missing or unreadable."""
    try:
        lines = MEMINFO_PATH.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, rest = line.partition(":")
        if name.strip() == "MemAvailable":
            fields = rest.split()
            if not fields or not fields[0].isdecimal():
                return None
            unit = fields[1].lower() if len(fields) > 1 else "b"
            factor = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}.get(unit)
            return None if factor is None else int(fields[0]) * factor
    return None


def _cgroup_headroom() -> int | None:
    """Bytes left under the tightest cgroup v2 memory limit, or ``None`` without a limit.

    Looks at the process's own cgroup (from :data:`CGROUP_SELF`) and every cgroup above it, up
    to :data:`CGROUP_DIR` (the root a container sees).
    """
    try:
        entries = CGROUP_SELF.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        entries = []
    relative = next((line[3:] for line in entries if line.startswith("0::")), "/")
    folder = CGROUP_DIR / relative.strip().lstrip("/")
    headrooms = []
    for candidate in (folder, *folder.parents):
        if not candidate.is_relative_to(CGROUP_DIR):
            break
        try:
            limit = (candidate / "memory.max").read_text(encoding="ascii").strip()
            current = (candidate / "memory.current").read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if limit.isdecimal() and current.isdecimal():  # "max": no limit at this level
            headrooms.append(max(int(limit) - int(current), 0))
    return min(headrooms) if headrooms else None


def images_fingerprint(images: Stimulus) -> str:
    """A hash of the images' identity: their files (names, sizes) or their array's bytes."""
    digest = hashlib.sha256()
    if images.sources is not None:
        for source in images.sources:
            digest.update(source.encode())
            digest.update(str(os.path.getsize(source)).encode())
    elif images.array is not None:
        array = images.array
        digest.update(f"{array.shape}{array.dtype}".encode())
        for start in range(0, len(array), 256):
            digest.update(np.ascontiguousarray(array[start : start + 256]).tobytes())
    else:
        for start in range(len(images)):
            digest.update(np.ascontiguousarray(images.batch(start, start + 1)).tobytes())
    return digest.hexdigest()


def gather_images(images: Stimulus, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Images *indices* in the form :meth:`berg_core.Stimulus.batch` yields."""
    parts = [images.batch(int(i), int(i) + 1) for i in indices]
    arrays = [p if isinstance(p, np.ndarray) else np.stack(p) for p in parts]
    if len({a.shape[1:] for a in arrays}) == 1:
        return np.concatenate(arrays)
    return [a[0] for a in arrays]


class TokenStore(ABC):
    """Tokens of N images by index.

    Attributes
    ----------
    layers : tuple of str
    local_shapes : dict of str to tuple
        ``(C, H, W)`` of each layer's local tokens.
    global_shapes : dict of str to tuple
        ``(C,)`` of each layer's global tokens.
    """

    layers: tuple[str, ...]
    local_shapes: dict[str, tuple[int, ...]]
    global_shapes: dict[str, tuple[int, ...]]

    @abstractmethod
    def get(self, indices: np.ndarray) -> Tokens:
        """Tokens of images *indices* (ascending), as tensors of the store's dtype."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to free by default
        """Free what the store holds."""

    def _set_shapes(self, tokens: Tokens) -> None:
        local, global_ = tokens
        self.layers = tuple(local)
        self.local_shapes = {name: tuple(t.shape[1:]) for name, t in local.items()}
        self.global_shapes = {name: tuple(t.shape[1:]) for name, t in global_.items()}

    def bytes_per_image(self, dtype: torch.dtype) -> int:
        """Bytes one image's tokens take in *dtype*."""
        values = sum(int(np.prod(s)) for s in self.local_shapes.values())
        values += sum(int(np.prod(s)) for s in self.global_shapes.values())
        return values * torch.empty((), dtype=dtype).element_size()


class LiveTokens(TokenStore):
    """No cache: the backbone runs on the requested images every time.

    Parameters
    ----------
    compute : callable
        ``compute(batch) -> Tokens`` for a stimulus batch (see :func:`build_token_store`).
    images : Stimulus
    """

    def __init__(self, compute: Callable[[Any], Tokens], images: Stimulus) -> None:
        self.compute = compute
        self.images = images
        self._set_shapes(compute(images.batch(0, 1)))

    def get(self, indices: np.ndarray) -> Tokens:
        """Run the backbone on images *indices*."""
        return self.compute(gather_images(self.images, indices))


class MemoryTokens(TokenStore):
    """Tokens of every image in RAM: one ``(N, ...)`` tensor per layer and kind."""

    def __init__(self, n: int, first: Tokens, dtype: torch.dtype, pin: bool = False) -> None:
        self._set_shapes(first)
        self.local = {
            name: torch.empty((n, *shape), dtype=dtype, pin_memory=pin)
            for name, shape in self.local_shapes.items()
        }
        self.global_ = {
            name: torch.empty((n, *shape), dtype=dtype, pin_memory=pin)
            for name, shape in self.global_shapes.items()
        }

    def put(self, start: int, tokens: Tokens) -> None:
        """Store the tokens of images ``start, start + 1, ...``."""
        local, global_ = tokens
        for name in self.layers:
            stop = start + local[name].shape[0]
            self.local[name][start:stop] = local[name]
            self.global_[name][start:stop] = global_[name]

    def get(self, indices: np.ndarray) -> Tokens:
        """Stored tokens of images *indices*."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return (
            {name: t.index_select(0, index) for name, t in self.local.items()},
            {name: t.index_select(0, index) for name, t in self.global_.items()},
        )

    def close(self) -> None:
        """Drop the tensors."""
        self.local, self.global_ = {}, {}


class HDF5Tokens(TokenStore):
    """Tokens of every image in an HDF5 file: datasets ``local/<i>`` and ``global/<i>``.

    Layer ``i`` is the i-th name of the file's ``layers`` attribute; every dataset is chunked by
    image, so reading a batch touches only its images.
    """

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = Path(path)
        self.file = h5py.File(self.path, "r")
        self.layers = tuple(json.loads(self.file.attrs["layers"]))
        self.local_shapes = {
            name: tuple(self.file[f"local/{i}"].shape[1:]) for i, name in enumerate(self.layers)
        }
        self.global_shapes = {
            name: tuple(self.file[f"global/{i}"].shape[1:]) for i, name in enumerate(self.layers)
        }

    @staticmethod
    def matches(path: Path, fingerprint: dict[str, Any]) -> bool:
        """Whether *path* is a complete cache made with *fingerprint*."""
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                return bool(h5.attrs.get("complete")) and json.loads(
                    h5.attrs.get("fingerprint", "{}")
                ) == json.loads(json.dumps(fingerprint))
        except (OSError, ValueError):
            return False

    def get(self, indices: np.ndarray) -> Tokens:
        """Read the tokens of images *indices* (ascending, no repeats)."""
        index = np.asarray(indices, dtype=np.int64)
        local = {
            name: torch.from_numpy(self.file[f"local/{i}"][index])
            for i, name in enumerate(self.layers)
        }
        global_ = {
            name: torch.from_numpy(self.file[f"global/{i}"][index])
            for i, name in enumerate(self.layers)
        }
        return local, global_

    def close(self) -> None:
        """Close the file."""
        if self.file.id.valid:
            self.file.close()


def _write_hdf5(
    path: Path,
    fingerprint: dict[str, Any],
    n: int,
    first: Tokens,
    batches: Any,
    dtype: str,
) -> None:
    import h5py

    partial = path.with_name(f".{path.name}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    local, global_ = first
    try:
        with h5py.File(partial, "w") as h5:
            h5.attrs["layers"] = json.dumps(list(local))
            h5.attrs["fingerprint"] = json.dumps(fingerprint)
            h5.attrs["complete"] = False
            for i, name in enumerate(local):
                shape = tuple(local[name].shape[1:])
                h5.create_dataset(f"local/{i}", (n, *shape), dtype=dtype, chunks=(1, *shape))
                shape = tuple(global_[name].shape[1:])
                h5.create_dataset(f"global/{i}", (n, *shape), dtype=dtype, chunks=(1, *shape))
            for start, (batch_local, batch_global) in batches:
                for i, name in enumerate(local):
                    stop = start + batch_local[name].shape[0]
                    h5[f"local/{i}"][start:stop] = batch_local[name].numpy()
                    h5[f"global/{i}"][start:stop] = batch_global[name].numpy()
            h5.attrs["complete"] = True
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def build_token_store(
    compute: Callable[[Any], Tokens],
    images: Stimulus,
    *,
    mode: str,
    dtype: str,
    path: Path,
    fingerprint: dict[str, Any],
    ram_bytes: int | None,
    batch_size: int,
    pin_memory: bool = False,
    show_progress: bool = True,
) -> TokenStore:
    """Compute the tokens of every image once, into RAM or an HDF5 file (or not at all).

    Parameters
    ----------
    compute : callable
        ``compute(batch) -> Tokens``: preprocessing and backbone for one stimulus batch, returning
        CPU tensors.
    images : Stimulus
    mode : {"auto", "ram", "disk", "none"}
        ``auto``: RAM when the tokens take at most *ram_bytes*, else disk.
    dtype : {"float16", "float32"}
        How tokens are stored.
    path : Path
        HDF5 file for the disk cache (reused when complete and made with *fingerprint*).
    fingerprint : dict
        Identifies images and backbone (JSON values).
    ram_bytes : int or None
        RAM budget of the ``auto`` mode (``None``: half of :func:`available_memory`).
    batch_size : int
        Images per backbone pass.
    pin_memory : bool
        Pin the RAM cache (faster copies to a CUDA device).
    show_progress : bool

    Returns
    -------
    TokenStore
    """
    from tqdm.auto import tqdm

    fingerprint = {**fingerprint, "dtype": dtype, "n": len(images)}
    if mode == "none":
        return LiveTokens(compute, images)
    if mode in ("auto", "disk") and path.is_file() and HDF5Tokens.matches(path, fingerprint):
        return HDF5Tokens(path)
    n = len(images)
    torch_dtype = _DTYPES[dtype]

    def batches() -> Any:
        progress = tqdm(
            total=n, desc="Caching backbone tokens", unit="img", disable=not show_progress
        )
        with progress as bar:
            for start in range(0, n, batch_size):
                local, global_ = compute(images.batch(start, min(n, start + batch_size)))
                local = {k: v.to(torch_dtype) for k, v in local.items()}
                global_ = {k: v.to(torch_dtype) for k, v in global_.items()}
                yield start, (local, global_)
                bar.update(next(iter(local.values())).shape[0])

    stream = batches()
    start, first = next(stream)
    probe = MemoryTokens(0, first, torch_dtype)
    needed = probe.bytes_per_image(torch_dtype) * n
    if mode == "auto":
        budget = ram_bytes if ram_bytes is not None else (available_memory() or 0) // 2
        mode = "ram" if needed <= budget else "disk"
    if mode == "ram":
        store = MemoryTokens(n, first, torch_dtype, pin=pin_memory)
        store.put(start, first)
        for start, tokens in stream:
            store.put(start, tokens)
        return store
    if mode != "disk":  # pragma: no cover - TrainConfig validates the mode
        raise InvalidParameterError(f"unknown cache mode {mode!r}")

    def all_batches() -> Any:
        yield start, first
        yield from stream

    _write_hdf5(path, fingerprint, n, first, all_batches(), dtype)
    return HDF5Tokens(path)


def tokens_to(tokens: Tokens, device: torch.device) -> Tokens:
    """*tokens* as float32 tensors on *device*."""
    local, global_ = tokens
    return (
        {k: v.to(device, torch.float32, non_blocking=True) for k, v in local.items()},
        {k: v.to(device, torch.float32, non_blocking=True) for k, v in global_.items()},
    )


def token_computer(
    backbone: Any, preprocessor: Callable[[Any], torch.Tensor], *, to_cpu: bool
) -> Callable[[Any], Tokens]:
    """``compute(batch) -> Tokens``: preprocess, ``get_tokens`` (no autograd), checked.

    With *to_cpu*, tokens are moved to the CPU (for caches); otherwise they stay where the
    backbone computed them.
    """

    def compute(batch: Any) -> Tokens:
        with torch.no_grad():
            local, global_ = check_tokens(backbone.get_tokens(preprocessor(batch)))
            if to_cpu:
                local = {k: v.detach().cpu() for k, v in local.items()}
                global_ = {k: v.detach().cpu() for k, v in global_.items()}
            else:
                local = {k: v.detach().contiguous() for k, v in local.items()}
                global_ = {k: v.detach() for k, v in global_.items()}
        return local, global_

    return compute
