"""Fixtures: a berg_dir in the reference THINGS layout, random ViT-B/32 weights in a TORCH_HOME."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_things.card import METADATA_FILE, N_VOXELS, ROIS, WEIGHTS_FILE

from berg_core.testing import torch_home_fixture

N_COMPONENTS = 12
N_FEATURES = 460_800
SUBJECT = 1
VOLUME_SHAPE = (72, 91, 76)


def _write_subject(berg_dir: Path, subject: int, rng: np.random.Generator) -> None:
    scale = rng.uniform(0.5, 2.0, N_FEATURES).astype(np.float32)
    weights = {
        "scaler_param": {
            "scale_": scale,
            "mean_": rng.normal(0, 0.5, N_FEATURES).astype(np.float32),
            "var_": scale**2,
            "n_features_in_": N_FEATURES,
            "n_samples_seen_": 8640,
        },
        "pca_param": {
            "components_": (
                rng.normal(0, 1, (N_COMPONENTS, N_FEATURES)) / np.sqrt(N_FEATURES)
            ).astype(np.float32),
            "explained_variance_": np.sort(rng.uniform(1, 10, N_COMPONENTS))[::-1].astype(
                np.float32
            ),
            "explained_variance_ratio_": np.full(N_COMPONENTS, 0.01, np.float32),
            "singular_values_": rng.uniform(1, 10, N_COMPONENTS).astype(np.float32),
            "mean_": rng.normal(0, 0.1, N_FEATURES).astype(np.float32),
            "n_components_": N_COMPONENTS,
            "n_samples_": 8640,
            "noise_variance_": np.float32(0.0),
            "n_features_in_": N_FEATURES,
        },
        "reg_param": {
            "coef_": rng.normal(0, 0.1, (N_VOXELS, N_COMPONENTS)).astype(np.float32),
            "intercept_": rng.normal(0, 0.1, N_VOXELS).astype(np.float32),
            "n_features_in_": N_COMPONENTS,
        },
    }
    roi = {}
    for name in ROIS:
        size = 0 if name == "rSTS" else int(rng.integers(50, 400))
        roi[name] = np.sort(rng.choice(N_VOXELS, size, replace=False)).astype(np.int64)
    roi["V2"] = np.union1d(roi["V2"], roi["V1"][:20])  # an overlap, as real ROIs can have
    metadata = {
        "fmri": {
            "voxel_coords": np.stack(
                np.unravel_index(rng.choice(72 * 91 * 76, N_VOXELS, replace=False), VOLUME_SHAPE),
                axis=1,
            ).astype(np.int64),
            "n_voxels": N_VOXELS,
            "subject_id": subject,
        },
        "encoding_model": {
            "train_stimuli": np.array([f"img_{i:05d}.jpg" for i in range(8640)], dtype=object),
            "train_concepts": np.array([f"concept_{i % 720}" for i in range(8640)], dtype=object),
            "test_stimuli": np.array([f"test_{i:03d}.jpg" for i in range(1200)], dtype=object),
            "test_concepts": np.array([f"tc_{i % 100}" for i in range(1200)], dtype=object),
            "noise_ceiling_singletrial": rng.uniform(0, 60, N_VOXELS).astype(np.float32),
            "noise_ceiling_testset": rng.uniform(0, 90, N_VOXELS).astype(np.float32),
            "splithalf_corrected": rng.uniform(-0.2, 0.9, N_VOXELS).astype(np.float32),
            "splithalf_uncorrected": rng.uniform(-0.2, 0.8, N_VOXELS).astype(np.float32),
            "correlation_results": rng.uniform(-0.1, 0.7, N_VOXELS).astype(np.float32),
        },
        "prf": {
            key: rng.uniform(0, 10, N_VOXELS).astype(np.float32)
            for key in ("prf_eccentricity", "prf_polarangle", "prf_rsquared", "prf_size")
        },
        "roi": roi,
    }
    for template, payload in ((WEIGHTS_FILE, weights), (METADATA_FILE, metadata)):
        path = berg_dir / template.format(subject=subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, payload, allow_pickle=True)


@pytest.fixture(scope="session")
def berg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A berg_dir with subject 1 of fmri-things_fmri_1-vit_b_32 (random weights, k=12)."""
    root = tmp_path_factory.mktemp("berg_dir")
    _write_subject(root, SUBJECT, np.random.default_rng(20200220))
    return root


#: A TORCH_HOME whose cache holds random ViT-B/32 weights under torchvision's file name.
torch_home = torch_home_fixture("ViT_B_32_Weights.IMAGENET1K_V1", seed=7)


@pytest.fixture
def berg(berg_dir: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch):
    """A BERG on the generated berg_dir, with TORCH_HOME pointing at the random weights."""
    from berg_core import BERG, registry

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    registry.reset()
    yield BERG(berg_dir)
    registry.reset()
