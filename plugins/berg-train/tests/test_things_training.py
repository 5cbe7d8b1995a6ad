"""Training on a simulated THINGS-fMRI1 subject: recovery with a user's own backbone, and a
ViT-B/32 model that berg-things loads, with metrics checked against an independent computation."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.stats import pearsonr

from berg_core.safe_npy import load_pickled_npy
from berg_core.torchkit import PCA_KEYS, REGRESSION_KEYS, SCALER_KEYS

MODEL = "fmri-things_fmri_1-vit_b_32"


@pytest.fixture(scope="module")
def independent(things_sim: Any) -> dict[str, Any]:
    """Test targets of some voxels from the raw files with numpy alone, and the test images."""
    root = things_sim.root
    with open(root / "sub-01_StimulusMetadata.csv", newline="") as stream:
        trials = list(csv.DictReader(stream))
    truth = things_sim.truth()
    rng = np.random.default_rng(3)
    visual = np.sort(rng.choice(truth["responses_columns"], 300, replace=False))
    others = np.setdiff1d(np.arange(211_339), truth["responses_columns"])
    voxels = np.concatenate([visual, np.sort(rng.choice(others, 200, replace=False))])
    with h5py.File(root / "sub-01_ResponseData.h5", "r") as h5:
        data = h5["ResponseData/block0_values"][:][voxels].astype(np.float64)  # (voxels, trials)
    sessions = np.array([int(t["session"]) for t in trials])
    for session in np.unique(sessions):
        cols = sessions == session
        mean = data[:, cols].mean(axis=1, keepdims=True)
        std = np.maximum(data[:, cols].std(axis=1, keepdims=True), 1e-8)
        data[:, cols] = (data[:, cols] - mean) / std
    test = [i for i, t in enumerate(trials) if t["trial_type"] == "test"]
    stimuli = sorted({trials[i]["stimulus"] for i in test})
    targets = np.stack(
        [data[:, [i for i in test if trials[i]["stimulus"] == s]].mean(axis=1) for s in stimuli]
    )
    concept = {trials[i]["stimulus"]: trials[i]["concept"] for i in test}
    images = [
        np.asarray(Image.open(root / "images" / concept[s] / s).convert("RGB")).transpose(2, 0, 1)
        for s in stimuli
    ]
    return {
        "voxels": voxels,
        "n_visual": visual.size,
        "targets": targets,
        "stimuli": stimuli,
        "images": np.stack(images),
    }


def test_recovers_the_ground_truth_with_a_users_backbone(
    things_sim: Any, independent: Any, helpers: Any, tmp_path: Path
) -> None:
    from berg_train import TrainConfig, train_things

    result = train_things(
        things_sim.root,
        1,
        tmp_path / "berg_dir",
        config=TrainConfig(
            backbone=helpers.tiny_backbone(), n_components=12, device="cpu", show_progress=False
        ),
    )
    assert result.weights_path.parent.parent.name == "model-tiny"
    truth = things_sim.truth()
    n_visual = independent["n_visual"]
    visual = independent["voxels"][:n_visual]
    columns = np.searchsorted(truth["responses_columns"], visual)
    rows = [list(truth["image_stimuli"]).index(s) for s in independent["stimuli"]]
    signal = truth["responses_signal_by_image"][rows][:, columns]
    oracle = helpers.oracle_r(signal, independent["targets"][:, :n_visual])
    r = result.evaluation["responses"]["correlation"][visual]
    # 8 test images: single-voxel r is noisy, the median ratio is not
    assert np.median(r / np.maximum(oracle, 1e-3)) > 0.9
    nc = result.evaluation["responses"]["noise_ceiling"]
    ncsnr = truth["responses_ncsnr"]
    np.testing.assert_allclose(nc, ncsnr**2 / (ncsnr**2 + 1 / 4), atol=1e-5)


def test_vit_model_loads_in_berg_things_and_metrics_match(
    things_sim: Any, independent: Any, torch_home: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from berg_train import TrainConfig, train_things

    from berg_core import BERG, registry

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    berg_dir = tmp_path / "berg_dir"
    result = train_things(
        things_sim.root,
        1,
        berg_dir,
        config=TrainConfig(n_components=10, device="cpu", show_progress=False),
    )
    assert result.weights_path == (
        berg_dir / "encoding_models/modality-fmri/train_dataset-things_fmri_1/model-vit_b_32"
        / "encoding_models_weights/weights_sub-01.npy"
    )  # fmt: skip
    weights = np.load(result.weights_path, allow_pickle=True).item()
    assert set(weights) == {"scaler_param", "pca_param", "reg_param"}
    assert set(weights["scaler_param"]) == set(SCALER_KEYS)
    assert set(weights["pca_param"]) == set(PCA_KEYS)
    assert set(weights["reg_param"]) == set(REGRESSION_KEYS)
    assert weights["pca_param"]["components_"].shape == (10, 460_800)

    registry.reset()
    try:
        berg = BERG(berg_dir)
        metadata = berg.get_model_metadata(MODEL, subject=1)
        with berg.get_encoding_model(MODEL, subject=1, device="cpu") as model:
            responses = berg.encode(model, independent["images"], show_progress=False)
        with berg.get_encoding_model(MODEL, subject=1, selection={"roi": ["V1"]}) as model:
            v1 = berg.encode(model, independent["images"][:2], show_progress=False)
    finally:
        registry.reset()
    np.testing.assert_allclose(v1, responses[:2, metadata["roi"]["V1"]], rtol=1e-4, atol=1e-5)
    voxels = independent["voxels"]
    expected = np.array(
        [
            max(pearsonr(responses[:, v], independent["targets"][:, j]).statistic, 0.0)
            for j, v in enumerate(voxels)
        ]
    )
    encoding = metadata["encoding_model"]
    np.testing.assert_allclose(encoding["correlation_results"][voxels], expected, atol=2e-3)
    assert list(encoding["test_avg_stimuli"]) == independent["stimuli"]
    assert encoding["train_stimuli"].size == 80 and encoding["test_stimuli"].size == 32
    assert metadata["fmri"]["voxel_coords"].shape == (211_339, 3)
    assert set(metadata["prf"]) == {
        "prf_eccentricity",
        "prf_polarangle",
        "prf_rsquared",
        "prf_size",
    }
    nc = encoding["noise_ceiling"][voxels]
    ev = np.minimum(100 * expected**2 / np.where(nc == 0, 1e-14, nc), 100)
    np.testing.assert_allclose(encoding["explained_variance"][voxels], ev, atol=0.5)
    single = encoding["noise_ceiling_singletrial"][voxels]
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = np.where(single > 0, expected**2 / (single / 100) * 100, 0.0)
    np.testing.assert_allclose(
        encoding["percent_noise_ceiling"][voxels], percent, rtol=1e-2, atol=0.5
    )
    assert load_pickled_npy(result.metadata_path)["berg_train"]["simulated"] is True
