"""RDMs (correlation distance) of areas, streamed for large N, and RSA between RDMs.

* An RDM entry is ``1 - r`` with ``r`` the Pearson correlation between two images' response
  patterns (over the area's columns). Patterns are centred and scaled to unit norm as they
  arrive, block by block, into a float32 buffer (in memory, or a temporary memory-mapped file
  above *memory_bytes*); the RDM is then ``1 - Z Z^T`` computed by row blocks, in float64.
* RSA compares the upper triangles (diagonal excluded) of two RDMs with Spearman's rank
  correlation (default; ties get their average rank) or Pearson's correlation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import BERG, InvalidParameterError
from berg_insilico.areas import as_areas
from berg_insilico.images import open_images
from berg_insilico.stream import open_encoders, stream

__all__ = ["PatternBuffer", "area_rdms", "rdm", "rsa", "upper"]

METHODS = ("spearman", "pearson")


class PatternBuffer:
    """Centred, unit-norm response patterns of N images, filled block by block.

    Parameters
    ----------
    n_images, n_columns : int
    memory_bytes : int
        Above this size the buffer is a temporary memory-mapped file.
    """

    def __init__(self, n_images: int, n_columns: int, memory_bytes: int = 2**30) -> None:
        self._tmp = None
        if n_images * n_columns * 4 > memory_bytes:
            self._tmp = tempfile.TemporaryDirectory(prefix="berg-insilico-")
            self.z = np.memmap(
                Path(self._tmp.name) / "patterns.f32", np.float32, "w+", shape=(n_images, n_columns)
            )
        else:
            self.z = np.empty((n_images, n_columns), dtype=np.float32)

    def add(self, start: int, patterns: np.ndarray) -> None:
        """Centre and normalise the rows of *patterns* ``(B, P)`` into images ``start ..``."""
        x = np.asarray(patterns, dtype=np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norm == 0):
            bad = start + int(np.flatnonzero(norm[:, 0] == 0)[0])
            raise InvalidParameterError(
                f"image {bad} has the same response in every column: its correlation with other "
                f"images is undefined (an area needs at least two columns that differ)"
            )
        self.z[start : start + x.shape[0]] = x / norm

    def rdm(self, block: int = 1024) -> np.ndarray:
        """``1 - Z Z^T`` as an ``(N, N)`` float64 array (diagonal exactly 0)."""
        n = self.z.shape[0]
        out = np.empty((n, n), dtype=np.float64)
        for i in range(0, n, block):
            rows = np.asarray(self.z[i : i + block], dtype=np.float64)
            for j in range(0, n, block):
                out[i : i + block, j : j + block] = (
                    1.0 - rows @ np.asarray(self.z[j : j + block], dtype=np.float64).T
                )
        np.fill_diagonal(out, 0.0)
        return out

    def close(self) -> None:
        """Delete the temporary file, if any."""
        if self._tmp is not None:
            del self.z
            self._tmp.cleanup()
            self._tmp = None


def rdm(patterns: np.ndarray) -> np.ndarray:
    """The correlation-distance RDM ``1 - corr`` of the rows of *patterns* ``(N, P)``.

    Raises
    ------
    InvalidParameterError
        For an array that is not 2-D with N >= 2 and P >= 2, or a constant row.
    """
    patterns = np.asarray(patterns)
    if patterns.ndim != 2 or patterns.shape[0] < 2 or patterns.shape[1] < 2:
        raise InvalidParameterError(
            f"patterns has shape {patterns.shape}; expected (N images, P columns), N, P >= 2"
        )
    buffer = PatternBuffer(*patterns.shape)
    buffer.add(0, patterns)
    return buffer.rdm()


def upper(matrix: np.ndarray) -> np.ndarray:
    """The upper triangle of a square matrix, diagonal excluded, row by row."""
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x) != 0) + 1]
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else float("nan")


def correlate(x: np.ndarray, y: np.ndarray, method: str = "spearman") -> float:
    """Spearman's or Pearson's correlation of two vectors."""
    if method == "spearman":
        return _pearson(_ranks(x), _ranks(y))
    return _pearson(np.asarray(x, np.float64), np.asarray(y, np.float64))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidParameterError(f"method={method!r}; allowed: {', '.join(METHODS)}")


def rsa(rdm_a: np.ndarray, rdm_b: np.ndarray, method: str = "spearman") -> float:
    """The RSA of two RDMs: the correlation of their upper triangles (diagonal excluded).

    Parameters
    ----------
    rdm_a, rdm_b : numpy.ndarray
        Square ``(N, N)`` RDMs of the same images in the same order.
    method : {"spearman", "pearson"}
        Spearman's rank correlation (ties: average ranks) or Pearson's.

    Returns
    -------
    float

    Raises
    ------
    InvalidParameterError
        For non-square or mismatched RDMs, N < 3, or an unknown method.
    """
    _check_method(method)
    a, b = np.asarray(rdm_a), np.asarray(rdm_b)
    for name, m in (("rdm_a", a), ("rdm_b", b)):
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 3:
            raise InvalidParameterError(f"{name} has shape {m.shape}; expected (N, N), N >= 3")
    if a.shape != b.shape:
        raise InvalidParameterError(
            f"rdm_a has shape {a.shape} and rdm_b {b.shape}; RDMs of the same images are needed"
        )
    return correlate(upper(a), upper(b), method)


def area_rdms(
    berg: BERG,
    areas: Any,
    images: Any,
    *,
    subjects: Sequence[Any] | None = None,
    block_size: int = 256,
    dataset: str | None = None,
    device: str = "auto",
    memory_bytes: int = 2**30,
    show_progress: bool = True,
) -> dict[tuple[str, Any], np.ndarray]:
    """RDMs of every (area, subject) on *images*, streamed block by block.

    Parameters
    ----------
    berg, areas, images, subjects, block_size, dataset, device, show_progress
        As :func:`berg_insilico.rank`; *images* must have a length (not a one-pass iterable).
    memory_bytes : int
        Pattern buffers above this size go to a temporary memory-mapped file.

    Returns
    -------
    dict
        ``(area, subject) -> (N, N)`` float64 RDM.
    """
    areas = as_areas(areas)
    subjects = tuple(subjects) if subjects is not None else (None,)
    collection = open_images(images, dataset=dataset)
    n = len(collection)
    if n < 3:
        raise InvalidParameterError(f"images: {n} images; an RDM for RSA needs at least 3")
    buffers: dict[tuple[str, Any], PatternBuffer] = {}
    try:
        with open_encoders(berg, areas, subjects, device) as encoders:
            for first, responses in stream(
                encoders, collection, block_size=block_size, show_progress=show_progress
            ):
                for encoder, values in zip(encoders, responses, strict=True):
                    if encoder.key not in buffers:
                        if values.shape[1] < 2:
                            raise InvalidParameterError(
                                f"area {encoder.area.name!r} has {values.shape[1]} column; "
                                f"an RDM needs at least 2"
                            )
                        buffers[encoder.key] = PatternBuffer(n, values.shape[1], memory_bytes)
                    buffers[encoder.key].add(first, values)
        return {key: buffer.rdm() for key, buffer in buffers.items()}
    finally:
        for buffer in buffers.values():
            buffer.close()
