"""Standard scaler + exact PCA fitted out of core on a feature matrix stored on disk.

The reference fits ``StandardScaler`` and then ``PCA(250, random_state=20200220)`` on all scaled
training features: 9,000 x 205,672 float32 (7.4 GB) for NSD with AlexNet, 8,640 x 460,800
(15.9 GB) for THINGS with ViT-B/32. Neither fits comfortably in memory, and scikit-learn's
``IncrementalPCA`` would need batches of at least 250 rows and gives an approximation whose
error depends on the batch order. Here the PCA is exact and computed from whichever of the two
second-moment matrices is small:

* ``n <= D`` (the usual case): the ``n x n`` Gram matrix ``K = Xc Xc'`` of the scaled, centred
  training features is accumulated over column blocks (every block holds all ``n`` rows of a few
  thousand features, so the scaler's mean and variance of those features are exact too). Its
  top ``k`` eigenvectors ``U`` and eigenvalues ``s^2`` give the scores ``U s`` and, in a second
  pass, the components ``Xc' U / s``. Memory: ``K`` (648 MB for n = 9,000) plus one block.
* ``D < n``: the ``D x D`` covariance is accumulated over row blocks instead.

The singular vectors are those of ``numpy.linalg.svd(Xc)`` (up to float rounding), with
scikit-learn's sign convention (the largest-magnitude entry of each component is positive), and
the fitted attributes are those of ``sklearn.decomposition.PCA`` (explained variance with
``n - 1`` degrees of freedom, ``noise_variance_`` from the total variance). scikit-learn itself
uses its randomized solver at this size (``random_state`` makes it repeatable, not exact); the
leading components agree with it to float precision and the last few of the 250 differ by the
randomized solver's own error (see the README and ``tests/test_pca.py``).

The Gram pass, the longest step, saves a checkpoint every few minutes; an interrupted fit
resumes from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from berg_train.runner import Runner, SerialRunner

__all__ = [
    "MAX_BLOCK_BYTES",
    "FeatureFile",
    "PCAResult",
    "column_block",
    "components_block",
    "fit_scaler_pca",
    "gram_block",
]

_EPS64 = float(np.finfo(np.float64).eps)


@dataclass
class PCAResult:
    """Fitted scaler and PCA, and the PCA scores of every row of the feature matrix.

    Attributes
    ----------
    scaler_param : dict
        ``StandardScaler`` attributes (``scale_``, ``mean_``, ``var_``, ``n_features_in_``,
        ``n_samples_seen_``).
    pca_param : dict
        ``PCA`` attributes (``components_`` float32 ``(k, D)``, ``explained_variance_``,
        ``explained_variance_ratio_``, ``singular_values_``, ``mean_``, ``n_components_``,
        ``n_samples_``, ``noise_variance_``, ``n_features_in_``).
    scores : numpy.ndarray
        ``(N, k)`` float64 scores of all rows (fitting rows and the others).
    """

    scaler_param: dict[str, Any]
    pca_param: dict[str, Any]
    scores: np.ndarray

    def save(self, path: Path) -> None:
        """Write to an ``.npz`` file (atomically)."""
        arrays = {f"scaler__{k}": np.asarray(v) for k, v in self.scaler_param.items()}
        arrays.update({f"pca__{k}": np.asarray(v) for k, v in self.pca_param.items()})
        arrays["scores"] = self.scores
        _atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: Path) -> PCAResult:
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as data:
            scaler: dict[str, Any] = {}
            pca: dict[str, Any] = {}
            for key in data.files:
                value = data[key]
                plain = value.item() if value.ndim == 0 else value
                if key.startswith("scaler__"):
                    scaler[key[8:]] = plain
                elif key.startswith("pca__"):
                    pca[key[5:]] = plain
            return cls(scaler, pca, data["scores"])


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


#: Bytes per feature value of a block at its peak: the float32 block, its float64 standardised
#: copy and the float32 result (:func:`_standardise`).
BYTES_PER_VALUE = 16
#: At most this much working memory per block, whatever the budget: the Gram product and the
#: reads cost the same in blocks of this size as in one, so a larger block only raises the peak.
MAX_BLOCK_BYTES = 256 * 2**20


def column_block(n_rows: int, n_cols: int, memory_bytes: float, *, multiple: int = 1) -> int:
    """Columns per block whose working copies fit ``min(memory_bytes, MAX_BLOCK_BYTES)``.

    Parameters
    ----------
    n_rows, n_cols : int
        Shape of the feature matrix.
    memory_bytes : float
        Working memory budget for one block.
    multiple : int
        Blocks are a multiple of this many columns (the storage's chunk width); a block has at
        least one multiple, whatever the budget, and never more columns than *n_cols*.

    Returns
    -------
    int
    """
    per_column = max(1, n_rows) * BYTES_PER_VALUE
    block = int(min(memory_bytes, MAX_BLOCK_BYTES) // per_column)
    block = max(multiple, (block // multiple) * multiple)
    return int(min(max(block, 1), n_cols))


def _bar(total: int, desc: str, show: bool, unit: str = "col") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not show)


def _block_moments(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof 0) of each column, in float64 (as ``StandardScaler``)."""
    x = block.astype(np.float64)
    mean = x.mean(axis=0)
    x -= mean
    var = np.einsum("ij,ij->j", x, x) / x.shape[0]
    return mean, var


def _scale_from_var(var: np.ndarray) -> np.ndarray:
    scale = np.sqrt(var)
    scale[scale < 10 * _EPS64] = 1.0  # as sklearn's _handle_zeros_in_scale
    return scale


def _standardise(block: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    x = block.astype(np.float64)
    x -= mean
    x /= scale
    return x.astype(np.float32)


@dataclass(frozen=True)
class FeatureFile:
    """A feature matrix in an HDF5 file, named by path: what a task in another process reads.

    ``FeatureFile(path)[rows, cols]`` opens the file, reads the slice and closes it.
    """

    path: str
    name: str = "features"

    def __getitem__(self, key: Any) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r", rdcc_nbytes=0) as h5:
            return np.asarray(h5[self.name][key])


def _task_source(features: Any, runner: Any) -> Any:
    """What tasks read the features from: *features* here; its file (or a shared copy) else."""
    if not runner.distributed:
        return features
    import h5py

    if isinstance(features, h5py.Dataset):
        return FeatureFile(os.fspath(Path(features.file.filename).resolve()), features.name)
    if isinstance(features, FeatureFile):
        return features
    return runner.share(np.asarray(features))


def gram_block(
    features: Any, n_fit: int, c0: int, c1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The scaler and Gram contribution of feature columns ``c0:c1`` (one task of the PCA).

    Returns
    -------
    tuple
        Column means and variances (float64, ddof 0), the scaled columns' means (float64), the
        block's Gram matrix ``Xc Xc'`` of the fitting rows (float32 ``(n_fit, n_fit)``, added to
        the float64 total in block order) and its sum of squares (float64).
    """
    x = np.asarray(features[0:n_fit, c0:c1], dtype=np.float32)
    m, v = _block_moments(x)
    s = _scale_from_var(v)
    xs = _standardise(x, m, s)
    del x
    pm = xs.mean(axis=0, dtype=np.float64)
    xs -= pm.astype(np.float32)
    gram = xs @ xs.T
    total_ss = float(np.einsum("ij,ij->", xs, xs, dtype=np.float64))
    return m, v, pm, gram, total_ss


def components_block(
    features: Any,
    n_rows: int,
    n_fit: int,
    c0: int,
    c1: int,
    mean: np.ndarray,
    scale: np.ndarray,
    pca_mean: np.ndarray,
    u32: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised components ``U' Xc`` of columns ``c0:c1`` and their float32 contribution
    ``Xc comp'`` to the scores of all *n_rows* rows (one task of the PCA's second pass)."""
    x = np.asarray(features[0:n_rows, c0:c1], dtype=np.float32)
    xc = _standardise(x, mean, scale)
    del x
    xc -= pca_mean.astype(np.float32)
    comp = u32 @ xc[:n_fit]
    return comp, xc @ comp.T


def fit_scaler_pca(
    features: Any,
    n_fit: int,
    n_components: int,
    *,
    memory_bytes: float = 2e9,
    chunk_cols: int = 1,
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 300.0,
    show_progress: bool = True,
    on_block: Callable[[], None] | None = None,
    runner: Runner | None = None,
) -> PCAResult:
    """Fit ``StandardScaler`` + ``PCA(n_components)`` on the first *n_fit* rows of *features*.

    Parameters
    ----------
    features : array-like
        ``(N, D)`` float32, sliceable as ``features[r0:r1, c0:c1]`` (an ``h5py.Dataset`` or a
        numpy array). Rows ``0..n_fit-1`` are the training rows the scaler and PCA are fitted
        on; all ``N`` rows are projected.
    n_fit : int
        Number of fitting rows.
    n_components : int
        Number of components ``k`` (at most ``min(n_fit, D)``).
    memory_bytes : float
        Working memory for one block of features (the Gram matrix comes on top); capped at
        :data:`MAX_BLOCK_BYTES`.
    chunk_cols : int
        Blocks are a multiple of this many columns (the HDF5 chunk width).
    checkpoint : Path, optional
        Where the Gram pass saves its progress (deleted when the fit is done).
    checkpoint_seconds : float
        Minimum time between checkpoints.
    show_progress : bool
        Progress bars.
    on_block : callable, optional
        Called after each block (tests use it to interrupt a fit).
    runner : Runner, optional
        Where the blocks are computed (:mod:`berg_train.runner`; default this process). Their
        partial sums are added here in block order, so the result is the same bit for bit
        whatever runs them (given the same BLAS).

    Returns
    -------
    PCAResult

    Raises
    ------
    ValueError
        If *n_components* exceeds ``min(n_fit, D)``.
    """
    n_rows, dim = (int(s) for s in features.shape)
    if not 0 < n_fit <= n_rows:
        raise ValueError(f"n_fit = {n_fit} must be in 1..{n_rows}")
    if not 1 <= n_components <= min(n_fit, dim):
        raise ValueError(
            f"n_components = {n_components} must be between 1 and min(n_samples, n_features) "
            f"= min({n_fit}, {dim})"
        )
    if n_fit <= dim:
        return _fit_gram(
            features,
            n_fit,
            n_components,
            memory_bytes=memory_bytes,
            chunk_cols=chunk_cols,
            checkpoint=checkpoint,
            checkpoint_seconds=checkpoint_seconds,
            show_progress=show_progress,
            on_block=on_block,
            runner=runner or SerialRunner(),
        )
    return _fit_covariance(
        features,
        n_fit,
        n_components,
        memory_bytes=memory_bytes,
        show_progress=show_progress,
        runner=runner or SerialRunner(),
    )


def _finish(
    *,
    mean: np.ndarray,
    var: np.ndarray,
    scale: np.ndarray,
    pca_mean: np.ndarray,
    components: np.ndarray,
    singular: np.ndarray,
    scores: np.ndarray,
    total_var: float,
    n_fit: int,
    dim: int,
) -> PCAResult:
    k = components.shape[0]
    # sklearn's svd_flip(u_based_decision=False): largest |entry| of each component positive
    pivots = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), pivots])
    signs[signs == 0] = 1.0
    components *= signs[:, None].astype(components.dtype)
    scores *= signs[None, :]
    explained = singular**2 / (n_fit - 1)
    rest = min(n_fit, dim) - k
    noise = (total_var - explained.sum()) / rest if rest > 0 else 0.0
    scaler_param = {
        "scale_": scale,
        "mean_": mean,
        "var_": var,
        "n_features_in_": int(dim),
        "n_samples_seen_": int(n_fit),
    }
    pca_param = {
        "components_": np.ascontiguousarray(components, dtype=np.float32),
        "explained_variance_": explained.astype(np.float32),
        "explained_variance_ratio_": (explained / total_var).astype(np.float32),
        "singular_values_": singular.astype(np.float32),
        "mean_": pca_mean.astype(np.float32),
        "n_components_": int(k),
        "n_samples_": int(n_fit),
        "noise_variance_": float(max(noise, 0.0)),
        "n_features_in_": int(dim),
    }
    return PCAResult(scaler_param, pca_param, scores)


def _top_eigen(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest *k* eigenvalues (descending, clipped at 0) and their eigenvectors."""
    from scipy.linalg import eigh

    size = matrix.shape[0]
    values, vectors = eigh(matrix, subset_by_index=[size - k, size - 1], overwrite_a=False)
    return np.clip(values[::-1], 0.0, None), vectors[:, ::-1]


def _fit_gram(
    features: Any,
    n_fit: int,
    k: int,
    *,
    memory_bytes: float,
    chunk_cols: int,
    checkpoint: Path | None,
    checkpoint_seconds: float,
    show_progress: bool,
    on_block: Callable[[], None] | None,
    runner: Runner,
) -> PCAResult:
    n_rows, dim = (int(s) for s in features.shape)
    block = column_block(n_rows, dim, memory_bytes, multiple=max(1, chunk_cols))
    gram = np.zeros((n_fit, n_fit), dtype=np.float64)
    mean = np.zeros(dim)
    var = np.zeros(dim)
    pca_mean = np.zeros(dim)
    total_ss = 0.0
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        with np.load(checkpoint, allow_pickle=False) as saved:
            if tuple(saved["key"]) == (n_fit, dim, block):
                gram, mean, var = saved["gram"], saved["mean"], saved["var"]
                pca_mean, total_ss = saved["pca_mean"], float(saved["total_ss"])
                start = int(saved["next"])
    last_save = time.monotonic()
    source = _task_source(features, runner)
    blocks = [(c0, min(dim, c0 + block)) for c0 in range(start, dim, block)]
    partials = runner.map(
        gram_block, [(source, n_fit, c0, c1) for c0, c1 in blocks], label="PCA Gram blocks"
    )
    with _bar(dim, "PCA 1/2: scaler + Gram matrix", show_progress) as bar:
        bar.update(start)
        for (c0, c1), (m, v, pm, block_gram, block_ss) in zip(blocks, partials, strict=True):
            gram += block_gram  # in block order, whoever computed the blocks
            total_ss += block_ss
            mean[c0:c1], var[c0:c1], pca_mean[c0:c1] = m, v, pm
            del block_gram
            bar.update(c1 - c0)
            if checkpoint is not None and (
                time.monotonic() - last_save > checkpoint_seconds or on_block is not None
            ):
                _atomic_savez(
                    Path(checkpoint),
                    {
                        "key": np.array([n_fit, dim, block]),
                        "gram": gram,
                        "mean": mean,
                        "var": var,
                        "pca_mean": pca_mean,
                        "total_ss": np.array(total_ss),
                        "next": np.array(c1),
                    },
                )
                last_save = time.monotonic()
            if on_block is not None:
                on_block()
    scale = _scale_from_var(var)
    eigenvalues, u = _top_eigen(gram, k)
    del gram
    # components = U' Xc / s, normalised to unit length; scores of all rows = Xc_all @ comps'
    unnormalised = np.zeros((k, dim), dtype=np.float32)
    raw_scores = np.zeros((n_rows, k), dtype=np.float64)
    u32 = runner.share(u.T.astype(np.float32))
    blocks = [(c0, min(dim, c0 + block)) for c0 in range(0, dim, block)]
    tasks = [
        (source, n_rows, n_fit, c0, c1, mean[c0:c1], scale[c0:c1], pca_mean[c0:c1], u32)
        for c0, c1 in blocks
    ]
    results = runner.map(components_block, tasks, label="PCA components")
    with _bar(dim, "PCA 2/2: components + scores", show_progress) as bar:
        for (c0, c1), (comp, block_scores) in zip(blocks, results, strict=True):
            unnormalised[:, c0:c1] = comp
            raw_scores += block_scores  # in block order
            del block_scores
            bar.update(c1 - c0)
    norms = np.sqrt(np.einsum("ij,ij->i", unnormalised, unnormalised, dtype=np.float64))
    safe = np.where(norms > 0, norms, 1.0)
    components = unnormalised / safe[:, None].astype(np.float32)
    scores = raw_scores / safe[None, :]
    if checkpoint is not None and Path(checkpoint).is_file():
        Path(checkpoint).unlink()
    return _finish(
        mean=mean,
        var=var,
        scale=scale,
        pca_mean=pca_mean,
        components=components,
        singular=np.sqrt(eigenvalues),
        scores=scores,
        total_var=total_ss / (n_fit - 1),
        n_fit=n_fit,
        dim=dim,
    )


def row_moments_block(features: Any, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, sum of squared deviations (float64) and count of rows ``r0:r1`` (covariance path,
    pass 1; merged in row order by Chan et al.'s pairwise update)."""
    x = np.asarray(features[r0:r1], dtype=np.float64)
    bm = x.mean(axis=0)
    return bm, ((x - bm) ** 2).sum(axis=0), int(x.shape[0])


def row_covariance_block(
    features: Any, r0: int, r1: int, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Column sums and ``X'X`` (float64) of the scaled rows ``r0:r1`` (covariance path, pass 2)."""
    xs = _standardise(np.asarray(features[r0:r1]), mean, scale)
    x64 = xs.astype(np.float64)
    return xs.sum(axis=0, dtype=np.float64), x64.T @ x64


def row_scores_block(
    features: Any,
    r0: int,
    r1: int,
    mean: np.ndarray,
    scale: np.ndarray,
    pca_mean: np.ndarray,
    vectors: np.ndarray,
) -> np.ndarray:
    """PCA scores of rows ``r0:r1`` (covariance path, pass 3)."""
    xs = _standardise(np.asarray(features[r0:r1]), mean, scale)
    return (xs.astype(np.float64) - pca_mean) @ vectors


def _fit_covariance(
    features: Any,
    n_fit: int,
    k: int,
    *,
    memory_bytes: float,
    show_progress: bool,
    runner: Runner,
) -> PCAResult:
    n_rows, dim = (int(s) for s in features.shape)
    rows = max(1, int(min(memory_bytes, MAX_BLOCK_BYTES) // (dim * 24)))
    source = _task_source(features, runner)
    fit_blocks = [(r0, min(n_fit, r0 + rows)) for r0 in range(0, n_fit, rows)]
    # pass 1: mean and variance (Chan et al.'s pairwise update, float64, in row order)
    count, mean, m2 = 0, np.zeros(dim), np.zeros(dim)
    moments = runner.map(row_moments_block, [(source, r0, r1) for r0, r1 in fit_blocks])
    with _bar(n_fit, "PCA 1/3: scaler", show_progress, "row") as bar:
        for bm, bm2, n_b in moments:
            delta = bm - mean
            total = count + n_b
            mean = mean + delta * n_b / total
            m2 = m2 + bm2 + delta**2 * count * n_b / total
            count = total
            bar.update(n_b)
    var = m2 / n_fit
    scale = _scale_from_var(var)
    # pass 2: covariance of the scaled features (summed in row order)
    sums = np.zeros(dim)
    cov = np.zeros((dim, dim))
    shared_mean, shared_scale = runner.share(mean), runner.share(scale)
    parts = runner.map(
        row_covariance_block,
        [(source, r0, r1, shared_mean, shared_scale) for r0, r1 in fit_blocks],
    )
    with _bar(n_fit, "PCA 2/3: covariance", show_progress, "row") as bar:
        for (r0, r1), (block_sums, block_cov) in zip(fit_blocks, parts, strict=True):
            sums += block_sums
            cov += block_cov
            bar.update(r1 - r0)
    pca_mean = sums / n_fit
    scatter = cov - n_fit * np.outer(pca_mean, pca_mean)
    total_var = float(np.trace(scatter)) / (n_fit - 1)
    eigenvalues, vectors = _top_eigen(scatter, k)
    components = np.ascontiguousarray(vectors.T, dtype=np.float32)
    scores = np.zeros((n_rows, k))
    all_blocks = [(r0, min(n_rows, r0 + rows)) for r0 in range(0, n_rows, rows)]
    shared_pm, shared_vectors = runner.share(pca_mean), runner.share(vectors)
    blocks_scores = runner.map(
        row_scores_block,
        [
            (source, r0, r1, shared_mean, shared_scale, shared_pm, shared_vectors)
            for r0, r1 in all_blocks
        ],
    )
    with _bar(n_rows, "PCA 3/3: scores", show_progress, "row") as bar:
        for (r0, r1), block in zip(all_blocks, blocks_scores, strict=True):
            scores[r0:r1] = block
            bar.update(r1 - r0)
    return _finish(
        mean=mean,
        var=var,
        scale=scale,
        pca_mean=pca_mean,
        components=components,
        singular=np.sqrt(eigenvalues),
        scores=scores,
        total_var=total_var,
        n_fit=n_fit,
        dim=dim,
    )
