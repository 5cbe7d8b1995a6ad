"""Streaming statistics: running count/mean/variance (Chan's merge) and top/bottom-k.

Both keep a fixed amount of memory whatever the number of images, and both are exact merges:
feeding the images in blocks gives the statistics of all of them (up to float64 rounding for the
moments; exactly for top-k).
"""

from __future__ import annotations

import numpy as np

from berg_core import InvalidParameterError

__all__ = ["RunningStats", "TopK"]


class RunningStats:
    """Count, mean and variance of each position over images, merged block by block.

    Chan, Golub & LeVeque's pairwise update (Welford's for one image): a block with count
    ``n_b``, mean ``m_b`` and sum of squared deviations ``M2_b`` merges as
    ``delta = m_b - m``, ``m += delta * n_b / n``, ``M2 += M2_b + delta**2 * n_a * n_b / n``.
    Everything is float64.

    Parameters
    ----------
    size : int
        The number of positions (1 for an area's mean, the number of columns per column).
    """

    def __init__(self, size: int) -> None:
        self.count = 0
        self.mean = np.zeros(size, dtype=np.float64)
        self.m2 = np.zeros(size, dtype=np.float64)

    def update(self, block: np.ndarray) -> None:
        """Merge a block ``(B, size)`` of values."""
        block = np.asarray(block, dtype=np.float64).reshape(block.shape[0], -1)
        n_b = block.shape[0]
        if n_b == 0:
            return
        mean_b = block.mean(axis=0)
        self._merge(n_b, mean_b, ((block - mean_b) ** 2).sum(axis=0))

    def merge(self, other: RunningStats) -> None:
        """Merge the statistics of other images (Chan's update, as :meth:`update` does).

        Merging the statistics of one block into these gives the very numbers :meth:`update`
        with that block gives: a fresh instance's single update stores the block's mean and M2
        exactly (``0 + m * 1.0``, ``0 + M2 + d**2 * 0``).
        """
        if other.count:
            self._merge(other.count, other.mean, other.m2)

    def _merge(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta**2 * (self.count * n_b / n)
        self.count = n

    def variance(self, ddof: int = 0) -> np.ndarray:
        """The variance of each position (``ddof=1``: the unbiased estimate); NaN if too few."""
        if self.count - ddof <= 0:
            return np.full_like(self.mean, np.nan)
        return self.m2 / (self.count - ddof)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint."""
        return {"count": np.array(self.count, np.int64), "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> RunningStats:
        """Rebuild from :meth:`state`."""
        stats = cls(state["mean"].shape[0])
        stats.count = int(state["count"])
        stats.mean = np.array(state["mean"], dtype=np.float64)
        stats.m2 = np.array(state["m2"], dtype=np.float64)
        return stats


class TopK:
    """The k largest (or smallest) values of each position and the images they came from.

    Ties are broken by the lower image index, so the result equals the first k entries of a
    full stable sort of all values (descending for ``largest=True``).

    Parameters
    ----------
    k : int
        How many to keep (fewer while fewer images were seen).
    size : int
        The number of positions.
    largest : bool
        Keep the largest (top) or the smallest (bottom) values.
    """

    def __init__(self, k: int, size: int, *, largest: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidParameterError(f"k must be an integer >= 1, got {k!r}")
        self.k = int(k)
        self.largest = largest
        self.values = np.empty((0, size), dtype=np.float32)
        self.indices = np.empty((0, size), dtype=np.int64)

    def update(self, block: np.ndarray, start: int) -> None:
        """Merge a block ``(B, size)`` whose rows are images ``start .. start + B - 1``."""
        block = np.asarray(block, dtype=np.float32).reshape(block.shape[0], -1)
        rows = np.arange(start, start + block.shape[0], dtype=np.int64)
        values = np.concatenate([self.values, block])
        indices = np.concatenate(
            [self.indices, np.broadcast_to(rows[:, None], block.shape).astype(np.int64)]
        )
        self._keep(values, indices)

    def merge(self, other: TopK) -> None:
        """Merge another TopK (of other images): the same result in any order of merges."""
        values = np.concatenate([self.values, other.values])
        indices = np.concatenate([self.indices, other.indices])
        self._keep(values, indices)

    def _keep(self, values: np.ndarray, indices: np.ndarray) -> None:
        key = -values if self.largest else values
        # lexsort sorts along the last axis by the last key first: value, then image index
        order = np.lexsort((indices.T, key.T))[:, : self.k].T
        self.values = np.take_along_axis(values, order, axis=0)
        self.indices = np.take_along_axis(indices, order, axis=0)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint."""
        return {"values": self.values, "indices": self.indices}

    @classmethod
    def from_state(cls, k: int, largest: bool, state: dict[str, np.ndarray]) -> TopK:
        """Rebuild from :meth:`state`."""
        top = cls(k, state["values"].shape[1], largest=largest)
        top.values = np.array(state["values"], dtype=np.float32)
        top.indices = np.array(state["indices"], dtype=np.int64)
        return top
