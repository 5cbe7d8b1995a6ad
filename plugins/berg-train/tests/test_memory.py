"""Block sizing of the out-of-core PCA and the memory release between training steps."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from berg_train.memory import release_memory
from berg_train.pca import MAX_BLOCK_BYTES, column_block, fit_scaler_pca


def test_block_follows_the_budget_below_the_cap() -> None:
    # 16 bytes per value at the block's peak: 1e6 bytes / (100 rows * 16) = 625 columns
    assert column_block(100, 10_000, 1e6) == 625
    assert column_block(100, 10_000, 1e6, multiple=128) == 512


def test_block_is_capped_whatever_the_budget() -> None:
    # a 100 GB budget gives the same block as the cap: 256 MiB / (330 rows * 16 bytes)
    n_rows, n_cols = 330, 205_672
    expected = MAX_BLOCK_BYTES // (n_rows * 16) // 4096 * 4096
    assert expected == 49_152
    assert column_block(n_rows, n_cols, 1e11, multiple=4096) == expected
    assert expected * n_rows * 16 <= MAX_BLOCK_BYTES


def test_block_at_least_one_multiple_and_at_most_all_columns() -> None:
    assert column_block(9_000, 205_672, 1e3, multiple=4096) == 4096
    assert column_block(10, 300, 1e11, multiple=4096) == 300


def test_capped_blocks_fit_the_same_pca() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((60, 40)) @ rng.standard_normal((40, 900))).astype(np.float32)
    one = fit_scaler_pca(x, 50, 8, memory_bytes=1e9, show_progress=False)
    many = fit_scaler_pca(x, 50, 8, memory_bytes=60 * 16 * 100, show_progress=False)  # 9 blocks
    assert column_block(60, 900, 60 * 16 * 100) == 100
    for key in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(one.scaler_param[key], many.scaler_param[key])
    # Both Gram matrices are float32 dot products of the same 50 rows of 900 values, summed in
    # one product or in 9; each entry is within gamma_900 = 900 u32 of |xi||xj| of the exact
    # one (standard dot-product bound), so |dK|_2 <= |dK|_F <= 2 gamma sum_i |xi|^2 = 2 gamma
    # trace(K) for the difference of the two, and by Weyl each eigenvalue moves by at most that.
    trace = float(
        one.pca_param["explained_variance_"].sum()
        / one.pca_param["explained_variance_ratio_"].sum()
    ) * (50 - 1)
    bound = 2 * 900 * 2.0**-24 * trace / (50 - 1)
    diff = np.abs(
        many.pca_param["explained_variance_"].astype(np.float64)
        - one.pca_param["explained_variance_"]
    )
    assert diff.max() <= bound + 4 * 2.0**-24 * one.pca_param["explained_variance_"].max()


def test_release_memory_runs_and_trims_on_glibc() -> None:
    trimmed = release_memory()
    assert isinstance(trimmed, bool)
    if sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver()):
        assert trimmed
    elif not sys.platform.startswith("linux"):
        assert not trimmed


@pytest.mark.parametrize("budget", [1e5, 1e7])
def test_covariance_path_unchanged_by_the_budget(budget: float) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 30)).astype(np.float32)
    ref = fit_scaler_pca(x, 200, 5, memory_bytes=1e9, show_progress=False)
    got = fit_scaler_pca(x, 200, 5, memory_bytes=budget, show_progress=False)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-9, atol=1e-9)
