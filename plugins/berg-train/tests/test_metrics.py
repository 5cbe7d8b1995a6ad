"""Accuracy metrics against independent computations."""

from __future__ import annotations

import numpy as np
from berg_train.metrics import (
    explained_variance,
    noise_ceiling_from_ncsnr,
    noise_ceiling_from_single_trial,
    pearson_columns,
)
from scipy.stats import pearsonr


def test_pearson_matches_scipy_with_negatives_and_constants_zeroed() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.normal(size=(30, 6))
    measured = predicted * np.array([1, -1, 0.3, 0.0, 2, 1]) + rng.normal(size=(30, 6))
    measured[:, 5] = 4.0  # constant: r undefined
    r = pearson_columns(predicted, measured)
    for j in range(5):
        expected = pearsonr(predicted[:, j], measured[:, j]).statistic
        assert np.isclose(r[j], max(expected, 0.0))
    assert r[1] == 0.0 and r[5] == 0.0


def test_pearson_unclipped_keeps_negatives_and_gives_nan_for_constants() -> None:
    rng = np.random.default_rng(1)
    n = 30
    predicted = rng.normal(size=(n, 4))
    measured = predicted * np.array([1, -1, -0.3, 0.0]) + rng.normal(size=(n, 4))
    measured[:, 3] = 4.0  # constant: r undefined
    r = pearson_columns(predicted, measured, clip=False)
    # float64: centring and the three length-n dot products each carry at most ~n u relative
    # error to first order (r's terms are well conditioned here); two computations compared
    tol = 2 * 4 * n * 2.0**-53
    for j in range(3):
        expected = pearsonr(predicted[:, j], measured[:, j]).statistic
        assert abs(r[j] - expected) <= tol
    assert r[1] < -0.3 and r[2] < 0  # negatives kept, not zeroed
    assert np.isnan(r[3])
    clipped = pearson_columns(predicted, measured)
    np.testing.assert_array_equal(clipped, np.nan_to_num(np.clip(r, 0, 1), nan=0.0))


def test_noise_ceilings() -> None:
    ncsnr = np.array([0.0, 0.5, 1.0, 3.0])
    nc = noise_ceiling_from_ncsnr(ncsnr, 3)
    np.testing.assert_allclose(nc, ncsnr**2 / (ncsnr**2 + 1 / 3))
    single = 100 * ncsnr**2 / (ncsnr**2 + 1)  # THINGS publishes this (percent)
    np.testing.assert_allclose(
        noise_ceiling_from_single_trial(single, 12), ncsnr**2 / (ncsnr**2 + 1 / 12)
    )


def test_explained_variance_clipped_and_zero_ceiling() -> None:
    ev = explained_variance(np.array([0.25, 0.5, 0.0, 0.1]), np.array([0.5, 0.4, 0.0, 0.0]))
    np.testing.assert_allclose(ev, [50.0, 100.0, 0.0, 100.0])
