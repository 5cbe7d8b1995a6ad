"""Out-of-core scaler + PCA against scikit-learn's StandardScaler + PCA."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from berg_train.pca import PCAResult, fit_scaler_pca
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler


def _features(n_rows: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_rows, 40)) * np.linspace(6, 0.5, 40)
    x = latent @ rng.normal(size=(40, dim)) + rng.normal(size=(n_rows, dim))
    x += rng.uniform(-3, 3, dim)
    x[:, 3] = 2.0  # a constant feature: scale 1, as sklearn
    return x.astype(np.float32)


@pytest.mark.parametrize("dim", [1500, 120])  # Gram path (n < D) and covariance path (D < n)
def test_equals_sklearn_exact_pca(dim: int) -> None:
    x = _features(260, dim)
    n_fit, k = 200, 30
    result = fit_scaler_pca(x, n_fit, k, memory_bytes=3e6, show_progress=False)
    scaler = StandardScaler().fit(x[:n_fit])
    pca = PCA(k, svd_solver="full").fit(scaler.transform(x[:n_fit]))
    np.testing.assert_allclose(result.scaler_param["mean_"], scaler.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.scaler_param["scale_"], scaler.scale_, rtol=1e-6)
    np.testing.assert_allclose(result.scaler_param["var_"], scaler.var_, rtol=1e-6)
    p = result.pca_param
    np.testing.assert_allclose(p["explained_variance_"], pca.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(
        p["explained_variance_ratio_"], pca.explained_variance_ratio_, rtol=1e-4
    )
    np.testing.assert_allclose(p["singular_values_"], pca.singular_values_, rtol=1e-4)
    np.testing.assert_allclose(p["components_"], pca.components_, atol=2e-4)  # same signs too
    np.testing.assert_allclose(p["noise_variance_"], pca.noise_variance_, rtol=1e-3)
    expected = pca.transform(scaler.transform(x))
    np.testing.assert_allclose(result.scores, expected, atol=2e-3 * np.abs(expected).max())
    assert p["components_"].dtype == np.float32
    assert (p["n_components_"], p["n_samples_"], p["n_features_in_"]) == (k, n_fit, dim)
    assert result.scaler_param["n_samples_seen_"] == n_fit


def test_close_to_the_references_randomized_pca() -> None:
    """The reference's PCA(k, random_state=20200220) is randomized: same leading components."""
    x = _features(300, 3000, seed=1)
    result = fit_scaler_pca(x, 300, 100, memory_bytes=4e6, show_progress=False)
    scaled = StandardScaler().fit_transform(x)
    reference = PCA(100, random_state=20200220).fit(scaled)
    assert reference._fit_svd_solver == "randomized"
    ours = result.pca_param["components_"].astype(np.float64)
    cosines = np.abs(np.sum(ours * reference.components_, axis=1))
    assert cosines[:40].min() > 0.9999  # the signal components agree to float precision
    # the randomized solver loses a little variance in the tail; the exact one cannot
    assert (result.pca_param["explained_variance_"] >= reference.explained_variance_ * 0.999).all()


def test_hdf5_source_checkpoint_and_resume(tmp_path: Path) -> None:
    x = _features(150, 900)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5.create_dataset("features", data=x, chunks=(64, 128))
    checkpoint = tmp_path / "gram.npz"
    calls = {"n": 0}

    def interrupt() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    with h5py.File(tmp_path / "f.h5", "r") as h5:
        with pytest.raises(KeyboardInterrupt):
            fit_scaler_pca(
                h5["features"], 120, 10, memory_bytes=4e5, chunk_cols=128,
                checkpoint=checkpoint, show_progress=False, on_block=interrupt,
            )  # fmt: skip
        assert checkpoint.is_file()
        resumed = fit_scaler_pca(
            h5["features"], 120, 10, memory_bytes=4e5, chunk_cols=128, checkpoint=checkpoint,
            show_progress=False,
        )  # fmt: skip
    assert not checkpoint.exists()
    fresh = fit_scaler_pca(x, 120, 10, memory_bytes=4e5, chunk_cols=128, show_progress=False)
    np.testing.assert_allclose(resumed.scores, fresh.scores, rtol=1e-6, atol=1e-6)
    resumed.save(tmp_path / "pca.npz")
    loaded = PCAResult.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(loaded.pca_param["components_"], resumed.pca_param["components_"])
    assert loaded.pca_param["n_components_"] == 10 and isinstance(
        loaded.scaler_param["n_samples_seen_"], int
    )


def test_too_many_components() -> None:
    with pytest.raises(ValueError, match="min"):
        fit_scaler_pca(np.zeros((10, 50), np.float32), 10, 11, show_progress=False)
