"""Accuracy of encoding models against held-out data and its noise ceiling.

The definitions follow the reference toolkit's evaluation scripts and the model cards:

* Pearson's r between predicted and measured test responses, per vertex/voxel, computed in
  float64; negative (and undefined, e.g. constant) correlations are set to 0;
* r² = r²;
* noise ceiling (fraction of variance explainable): NSD ``NC = ncsnr² / (ncsnr² + 1/n)`` with
  ``n`` the number of trials averaged per test image; for THINGS-fMRI1 the same formula with
  ``ncsnr²`` recovered from the published single-trial noise ceiling;
* % explained variance = ``100 r² / NC``, clipped at 100, with ``NC = 0`` replaced by 1e-14.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "explained_variance",
    "noise_ceiling_from_ncsnr",
    "noise_ceiling_from_single_trial",
    "pearson_columns",
]


def pearson_columns(
    predicted: np.ndarray, measured: np.ndarray, *, clip: bool = True
) -> np.ndarray:
    """Pearson's r of each column pair over the rows, in float64.

    Parameters
    ----------
    predicted, measured : numpy.ndarray
        ``(n, c)`` arrays.
    clip : bool, optional
        True (default, the fMRI evaluation): negatives and undefined values (a constant column)
        set to 0. False (THINGS EEG2's, as ``scipy.stats.pearsonr``): r as computed, negative
        values kept and NaN where a column is constant.

    Returns
    -------
    numpy.ndarray
        ``(c,)`` float64, in [0, 1] when *clip*.
    """
    p = np.asarray(predicted, dtype=np.float64)
    m = np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape:
        raise ValueError(f"shapes differ: {p.shape} and {m.shape}")
    p = p - p.mean(axis=0)
    m = m - m.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.einsum("ij,ij->j", p, m) / np.sqrt(
            np.einsum("ij,ij->j", p, p) * np.einsum("ij,ij->j", m, m)
        )
    if not clip:
        return r
    r = np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(r, 0.0, 1.0)


def noise_ceiling_from_ncsnr(ncsnr: np.ndarray, n_trials: float) -> np.ndarray:
    """``ncsnr² / (ncsnr² + 1/n)``: the explainable fraction of an *n*-trial average (NSD)."""
    snr2 = np.asarray(ncsnr, dtype=np.float64) ** 2
    snr2 = np.nan_to_num(snr2, nan=0.0)
    return snr2 / (snr2 + 1.0 / float(n_trials))


def noise_ceiling_from_single_trial(nc_single_percent: np.ndarray, n_trials: float) -> np.ndarray:
    """Noise ceiling (fraction) of an *n*-trial average from a single-trial one in percent.

    THINGS-fMRI1 publishes ``nc_singletrial = 100 ncsnr² / (ncsnr² + 1)``; inverting it gives
    ``ncsnr² = NC1 / (1 - NC1)`` and the ceiling of the average is
    ``ncsnr² / (ncsnr² + 1/n)`` (which is the dataset's ``nc_testset`` for its 12 repeats).
    """
    nc1 = np.clip(np.nan_to_num(np.asarray(nc_single_percent, dtype=np.float64)) / 100, 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = nc1 / (nc1 + (1.0 - nc1) / float(n_trials))
    return np.nan_to_num(result, nan=0.0)


def explained_variance(r2: np.ndarray, noise_ceiling: np.ndarray) -> np.ndarray:
    """``100 r² / NC`` clipped at 100 (``NC == 0`` counts as 1e-14), as the reference."""
    nc = np.asarray(noise_ceiling, dtype=np.float64).copy()
    nc[nc == 0] = 1e-14
    return np.minimum(100.0 * np.asarray(r2, dtype=np.float64) / nc, 100.0)
