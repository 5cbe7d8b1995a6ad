"""The THINGS fMRI model's differentiable path computes encode's function (ViT-B/32, issue 16).

Its ROI voxel selection is checked against the independent float64 reference; the method
(float64 twin, float32 bound) is berg_core.testing_differentiable's.
"""

from __future__ import annotations

import numpy as np
import pytest
from berg_things.card import MODEL_ID, WEIGHTS_FILE

from berg_core.safe_npy import load_pickled_npy
from berg_core.testing import reference_readout
from berg_core.testing_differentiable import (
    assert_paths_match,
    backbone_bound,
    float32_weights,
    run_paths,
)

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_differentiable_path_is_encode_in_float64_and_float32(berg, berg_dir):
    run = run_paths(berg, MODEL_ID, selection={"roi": "V1"}, seed=6)
    voxels = np.asarray(run.columns["responses"])
    stored = load_pickled_npy(berg_dir / WEIGHTS_FILE.format(subject=1))
    weights = float32_weights(stored)
    reg = {key: weights["reg_param"][key] for key in ("coef_", "intercept_", "n_features_in_")}
    reg["coef_"], reg["intercept_"] = reg["coef_"][voxels], reg["intercept_"][voxels]
    selected = {**weights, "reg_param": reg}
    exact, readout = reference_readout(selected, run.features, (len(voxels),))
    bound = readout + backbone_bound(
        run.features,
        weights["scaler_param"]["scale_"],
        weights["pca_param"]["components_"],
        reg["coef_"],
    )
    assert len(voxels) > 0
    assert_paths_match(run, exact, bound, (2, len(voxels)))
