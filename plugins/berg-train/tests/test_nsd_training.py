"""Training on a simulated NSD subject: recovery of the ground truth, reference layout, loading
through berg, metrics against an independent computation, resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat
from scipy.stats import pearsonr, zscore

from berg_core.safe_npy import load_pickled_npy
from berg_core.torchkit import PCA_KEYS, REGRESSION_KEYS, SCALER_KEYS

MODEL = "fmri-nsd_fsaverage-alexnet_untrained"
BETAS = "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR"


@pytest.fixture(scope="module")
def independent(nsd_sim: Any) -> dict[str, Any]:
    """Test targets of some vertices recomputed from the raw files with scipy, no berg-train."""
    root = nsd_sim.root
    design = loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    master = design["masterordering"].ravel().astype(int) - 1
    subjectim = design["subjectim"].astype(int) - 1
    shared = design["sharedix"].ravel().astype(int) - 1
    truth = nsd_sim.truth()
    rng = np.random.default_rng(5)
    out: dict[str, Any] = {}
    for hemi in ("lh", "rh"):
        visual = np.sort(rng.choice(truth[f"{hemi}_columns"], 300, replace=False))
        noise = np.sort(rng.choice(np.setdiff1d(np.arange(163_842), truth[f"{hemi}_columns"]), 200))
        vertices = np.concatenate([visual, noise])
        blocks = []
        for session in (1, 2, 3):
            data = nib.load(root / BETAS / f"{hemi}.betas_session{session:02d}.mgh").get_fdata()
            blocks.append(zscore(data[vertices, 0, 0, :], axis=1, nan_policy="omit"))
        betas = np.concatenate(blocks, axis=1).T  # (trials, vertices)
        trial_ids = subjectim[0, master[: betas.shape[0]]]
        ids, counts = np.unique(trial_ids[np.isin(trial_ids, shared)], return_counts=True)
        test_ids = ids[counts == 3]
        targets = np.nan_to_num(np.stack([betas[trial_ids == i].mean(axis=0) for i in test_ids]))
        out[hemi] = {"vertices": vertices, "n_visual": visual.size, "targets": targets}
    out["test_ids"] = test_ids
    with h5py.File(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "r") as h5:
        out["images"] = np.stack([h5["imgBrick"][i] for i in test_ids]).transpose(0, 3, 1, 2)
    return out


@pytest.fixture(scope="module")
def encoded(nsd_trained: Any, nsd_berg_dir: Path, independent: dict[str, Any]) -> Any:
    """The trained model loaded through BERG and run on the test images."""
    from berg_core import BERG

    berg = BERG(nsd_berg_dir)
    with berg.get_encoding_model(MODEL, subject=1, device="cpu") as model:
        return berg.encode(model, independent["images"], show_progress=False)


def test_weights_and_metadata_in_the_reference_layout(nsd_trained: Any, nsd_berg_dir: Path) -> None:
    folder = (
        nsd_berg_dir
        / "encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-alexnet_untrained"
    )
    assert nsd_trained.weights_path == folder / "encoding_models_weights/weights_subject-01.npy"
    assert nsd_trained.metadata_path == folder / "metadata/metadata_subject-01.npy"
    assert nsd_trained.figure_path.parent == folder / "encoding_models_accuracy"
    assert nsd_trained.figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the reference toolkit reads them with np.load(allow_pickle=True).item(); berg safely
    weights = np.load(nsd_trained.weights_path, allow_pickle=True).item()
    safe = load_pickled_npy(nsd_trained.weights_path)
    assert (
        set(weights) == set(safe) == {"scaler_param", "pca_param", "lh_reg_param", "rh_reg_param"}
    )
    assert set(weights["scaler_param"]) == set(SCALER_KEYS)
    assert set(weights["pca_param"]) == set(PCA_KEYS)
    for hemi in ("lh", "rh"):
        reg = weights[f"{hemi}_reg_param"]
        assert set(reg) == set(REGRESSION_KEYS)
        assert reg["coef_"].shape == (163_842, 20) and reg["coef_"].dtype == np.float32
    assert weights["pca_param"]["components_"].shape == (20, 205_672)
    metadata = load_pickled_npy(nsd_trained.metadata_path)
    fmri, models = metadata["fmri"], metadata["encoding_models"]
    for hemi in ("lh", "rh"):
        assert fmri[f"{hemi}_ncsnr"].shape == (163_842,)
        assert fmri[f"{hemi}_fsaverage_rois"]["V1v"].dtype == np.int64
        assert fmri[f"{hemi}_fsaverage_rois"]["mTL-bodies"].size == 0
        for what in ("correlation", "r2", "noise_ceiling", "explained_variance"):
            assert models[f"{hemi}_{what}_nsdcore"].shape == (163_842,)
    assert models["train_img_num"].size == 200 and models["test_img_num"].size == 30
    assert metadata["berg_train"]["simulated"] is True


def test_recovers_the_ground_truth(
    nsd_trained: Any, nsd_sim: Any, independent: Any, helpers: Any
) -> None:
    truth = nsd_sim.truth()
    position = {int(i): p for p, i in enumerate(truth["subject_image_ids"])}
    test_positions = [position[int(i)] for i in independent["test_ids"]]
    for hemi in ("lh", "rh"):
        data = independent[hemi]
        n_visual = data["n_visual"]
        visual = data["vertices"][:n_visual]
        columns = np.searchsorted(truth[f"{hemi}_columns"], visual)
        signal = truth[f"{hemi}_signal_by_position"][test_positions][:, columns]
        oracle = helpers.oracle_r(signal, data["targets"][:, :n_visual])
        r = nsd_trained.evaluation[hemi]["correlation"][visual]
        nc = nsd_trained.evaluation[hemi]["noise_ceiling"][visual]
        # the noise ceiling the files state is the one the data has
        assert abs(np.mean(oracle**2) - np.mean(nc)) < 0.05
        # test r close to what the SNR allows (the true model's r on the same test set)
        assert np.median(r / oracle) > 0.93
        assert np.mean(nsd_trained.evaluation[hemi]["explained_variance"][visual]) > 80
        noise_r = nsd_trained.evaluation[hemi]["correlation"][data["vertices"][n_visual:]]
        assert noise_r.mean() < 0.15  # chance level (negatives set to 0)


def test_metrics_match_independent_computation(
    nsd_trained: Any, independent: Any, encoded: Any
) -> None:
    for hemi, responses in zip(("lh", "rh"), encoded, strict=True):
        data = independent[hemi]
        predicted = responses[:, data["vertices"]]
        expected = np.array(
            [
                max(pearsonr(predicted[:, j], data["targets"][:, j]).statistic, 0.0)
                for j in range(predicted.shape[1])
            ]
        )
        metadata = load_pickled_npy(nsd_trained.metadata_path)["encoding_models"]
        stored = metadata[f"{hemi}_correlation_nsdcore"][data["vertices"]]
        np.testing.assert_allclose(stored, expected, atol=2e-3)
        ncsnr = nib.load(_ncsnr(nsd_trained, hemi)).get_fdata().ravel()[data["vertices"]]
        nc = ncsnr**2 / (ncsnr**2 + 1 / 3)
        np.testing.assert_allclose(
            metadata[f"{hemi}_noise_ceiling_nsdcore"][data["vertices"]], nc, rtol=1e-5
        )
        ev = np.minimum(100 * expected**2 / np.where(nc == 0, 1e-14, nc), 100)
        np.testing.assert_allclose(
            metadata[f"{hemi}_explained_variance_nsdcore"][data["vertices"]], ev, atol=0.5
        )


def _ncsnr(result: Any, hemi: str) -> Path:
    root = Path(load_pickled_npy(result.metadata_path)["berg_train"]["dataset_root"])
    return root / BETAS / f"{hemi}.ncsnr.mgh"


def test_sklearn_objects_rebuilt_from_the_files_predict_the_same(
    nsd_trained: Any, encoded: Any, independent: Any
) -> None:
    """What the reference toolkit does at load: set the sklearn attributes, then predict."""
    from berg_train import NSDDataset
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    weights = np.load(nsd_trained.weights_path, allow_pickle=True).item()
    scaler = StandardScaler()
    for key, value in weights["scaler_param"].items():
        setattr(scaler, key, value)
    pca = PCA(n_components=20, random_state=20200220)
    for key, value in weights["pca_param"].items():
        setattr(pca, key, value)
    dataset = NSDDataset(
        Path(load_pickled_npy(nsd_trained.metadata_path)["berg_train"]["dataset_root"]), 1
    )
    features_file = next(nsd_trained.work_dir.glob("features-*.h5"))
    with h5py.File(features_file, "r") as h5:
        features = h5["features"][int(dataset.test_rows[0]) : int(dataset.test_rows[-1]) + 1]
    z = pca.transform(scaler.transform(features)).astype(np.float32)
    for hemi, responses in zip(("lh", "rh"), encoded, strict=True):
        reg = LinearRegression()
        vertices = independent[hemi]["vertices"]
        reg.coef_ = weights[f"{hemi}_reg_param"]["coef_"][vertices]
        reg.intercept_ = weights[f"{hemi}_reg_param"]["intercept_"][vertices]
        reg.n_features_in_ = weights[f"{hemi}_reg_param"]["n_features_in_"]
        expected = reg.predict(z)
        np.testing.assert_allclose(
            responses[:, vertices], expected, atol=2e-3 * np.abs(expected).max()
        )


def test_roi_selection_and_metadata_through_berg(
    nsd_trained: Any, nsd_berg_dir: Path, independent: Any
) -> None:
    from berg_core import BERG

    berg = BERG(nsd_berg_dir)
    metadata = berg.get_model_metadata(MODEL, subject=1)
    v1v = metadata["fmri"]["lh_fsaverage_rois"]["V1v"]
    with berg.get_encoding_model(MODEL, subject=1, selection={"roi": "V1v"}, device="cpu") as model:
        lh, _ = berg.encode(model, independent["images"][:3], show_progress=False)
    assert lh.shape == (3, v1v.size)


def test_resume_and_ridge_reuse_the_work(
    nsd_trained: Any, nsd_sim: Any, nsd_berg_dir: Path
) -> None:
    from berg_train import NSDDataset, TrainConfig, train

    dataset = NSDDataset(nsd_sim.root, 1)
    work = nsd_trained.work_dir
    coef_before = load_pickled_npy(nsd_trained.weights_path)["rh_reg_param"]["coef_"][:1000].copy()
    features_file = next(work.glob("features-*.h5"))
    chunk = sorted(next(work.glob("regression-ols-*")).glob("rh-*.npz"))[0]
    chunk.unlink()  # an interrupted regression ...
    with h5py.File(features_file, "r+") as h5:
        before = h5["features"][192:198].copy()
        h5.attrs["done"] = 192  # ... and an interrupted feature extraction
    config = TrainConfig(n_components=20, device="cpu", show_progress=False)
    again = train(dataset, nsd_berg_dir, config)
    with h5py.File(features_file, "r") as h5:
        assert int(h5.attrs["done"]) == len(dataset.images)
        np.testing.assert_allclose(h5["features"][192:198], before, rtol=1e-5, atol=1e-6)
    assert chunk.is_file()
    coef_after = load_pickled_npy(again.weights_path)["rh_reg_param"]["coef_"][:1000]
    np.testing.assert_allclose(coef_after, coef_before, rtol=1e-4, atol=1e-6)
    # ridge on the same work folder: features and PCA are reused
    ridge = train(
        dataset,
        nsd_berg_dir,
        TrainConfig(
            n_components=20, regression="ridge", alphas=(1e2, 1e4, 1e6, 1e8), device="cpu",
            model_name="alexnet_untrained_ridge", show_progress=False, work_dir=work,
        ),
    )  # fmt: skip
    assert ridge.timings["features"] < 2.0 and ridge.timings["pca"] < 2.0
    metadata = load_pickled_npy(ridge.metadata_path)
    alphas = metadata["encoding_models"]["lh_ridge_alpha"]
    assert set(np.unique(alphas)) <= {1e2, 1e4, 1e6, 1e8}
    truth = nsd_sim.truth()
    visual = truth["lh_columns"]
    assert np.mean(ridge.evaluation["lh"]["explained_variance"][visual]) > 80
