"""A bounded, content-keyed cache of backbone features, shared by every model in a process.

The reference paper's in-silico loop loads one model per subject x ROI and encodes the same
images with each: the backbone (the same network, the same preprocessing, the same pixels) would
run again for every model. :class:`~berg_core.torchkit.FeatureReadoutModel` looks each stimulus
batch up here first. A key is the SHA-256 of

* the network's weights: every tensor of its state dict (names, dtypes, shapes, bytes), hashed
  once per network and again whenever one of them is modified in place;
* the preprocessing: every parameter of the transform (sizes, interpolation, mean, std), plus the
  memory format and the device the network runs on;
* the node list;
* the batch exactly as given: dtype, shape and bytes of every image.

so a feature is never served for other weights, other preprocessing or other pixels. A
preprocessing whose parameters are unknown (an arbitrary callable) is never cached. Features are
stored as float32 on the CPU, in an LRU bounded in bytes: by default the smaller of 1 GiB and 10%
of the memory available when the cache is first used; the environment variable
``BERG_FEATURE_CACHE_BYTES`` sets the bound (``0`` disables the cache). Served features are the
stored bytes, so responses are bit-for-bit those computed without the cache for the same batch
composition (the same images in the same batches).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from berg_core.errors import InvalidParameterError

__all__ = [
    "CACHE_BYTES_ENV",
    "FeatureCache",
    "batch_digest",
    "default_cache_bytes",
    "feature_cache",
    "state_digest",
]

#: Environment variable bounding the feature cache, in bytes (``0`` disables it).
CACHE_BYTES_ENV = "BERG_FEATURE_CACHE_BYTES"

_GIB = 2**30


def _available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or ``None`` where there is none."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_cache_bytes() -> int:
    """The cache's bound: ``$BERG_FEATURE_CACHE_BYTES``, else min(1 GiB, 10% of available memory).

    Raises
    ------
    InvalidParameterError
        If the environment variable is not a non-negative integer.
    """
    value = os.environ.get(CACHE_BYTES_ENV)
    if value is not None and value.strip() != "":
        try:
            size = int(value.strip())
        except ValueError:
            size = -1
        if size < 0:
            raise InvalidParameterError(
                f"{CACHE_BYTES_ENV} = {value!r} is not a number of bytes; give a non-negative "
                f"integer (0 disables the feature cache)"
            )
        return size
    available = _available_memory()
    return _GIB if available is None else min(_GIB, available // 10)


def state_digest(module: torch.nn.Module) -> bytes:
    """SHA-256 of every tensor in ``module.state_dict()``: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        array = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode())
        if array.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
            array = array.view(torch.int16)
        digest.update(memoryview(np.ascontiguousarray(array.numpy())).cast("B"))
    return digest.digest()


def batch_digest(batch: np.ndarray | Sequence[np.ndarray]) -> bytes:
    """SHA-256 of a stimulus batch: dtype, shape and bytes of the array or of every image."""
    digest = hashlib.sha256()
    images = [batch] if isinstance(batch, np.ndarray) else [np.asarray(a) for a in batch]
    digest.update(f"{'array' if isinstance(batch, np.ndarray) else 'list'}|{len(images)}|".encode())
    for image in images:
        digest.update(f"{image.dtype.str}|{image.shape}|".encode())
        digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return digest.digest()


class FeatureCache:
    """An LRU of ``(B, D)`` float32 feature matrices keyed by digest, bounded in bytes.

    Parameters
    ----------
    max_bytes : int
        Most bytes of features held; ``0`` disables the cache (nothing is stored). An entry
        larger than the bound is not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        if int(max_bytes) < 0:
            raise InvalidParameterError(f"max_bytes = {max_bytes!r}: give an integer >= 0")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        #: Lookups that found an entry / found none since creation (or :meth:`clear`).
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether anything can be stored (``max_bytes > 0``)."""
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> torch.Tensor | None:
        """The stored features of *key* (do not modify them), or ``None``; counts hits/misses."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: bytes, features: torch.Tensor) -> None:
        """Store a float32 CPU copy of *features*, evicting least recently used entries."""
        size = features.numel() * 4
        if size > self.max_bytes:
            return
        value = features.detach().to("cpu", torch.float32, copy=True)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old.numel() * 4
            while self._entries and self.nbytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.nbytes -= evicted.numel() * 4
            self._entries[key] = value
            self.nbytes += size

    def resize(self, max_bytes: int) -> None:
        """Set the bound to *max_bytes*, evicting entries until they fit (``0``: empty, off)."""
        if int(max_bytes) < 0:
            raise InvalidParameterError(f"max_bytes = {max_bytes!r}: give an integer >= 0")
        with self._lock:
            self.max_bytes = int(max_bytes)
            while self._entries and self.nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.nbytes -= evicted.numel() * 4

    def clear(self) -> None:
        """Drop every entry and reset the hit and miss counts."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0
            self.hits = self.misses = 0


_CACHE: FeatureCache | None = None
_CACHE_LOCK = threading.Lock()


def feature_cache() -> FeatureCache:
    """The process-wide cache, created on first use with :func:`default_cache_bytes`."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = FeatureCache(default_cache_bytes())
        return _CACHE


def _key(*parts: Any) -> bytes:
    """SHA-256 of the parts (bytes as they are, everything else through ``repr``)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


def feature_key(
    network: bytes, preprocessing: Any, batch: np.ndarray | Sequence[np.ndarray]
) -> bytes:
    """The cache key of *batch* through a network (its :func:`state_digest` + nodes + device)
    and a preprocessing (a ``repr``-able description of every parameter)."""
    return _key(network, preprocessing, batch_digest(batch))
