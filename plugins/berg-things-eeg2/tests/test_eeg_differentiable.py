"""The EEG ViT-B/32 model's differentiable path computes encode's function (issue 16).

The per-repetition readout (one scaler, then a PCA and a regression per repetition) runs its
out-of-place form; its channel/time selection is checked against the independent float64
reference, whose float32 bound is the readout's rounding (eeg2_reference.expected) plus the
backbone's, propagated per repetition. The method (float64 twin, float32 bound) is
berg_core.testing_differentiable's.
"""

from __future__ import annotations

import numpy as np
import pytest
from berg_things_eeg2.fixture import make_weights, write_model_files
from berg_things_eeg2.layout import CHANNELS, FOLDERS, REPETITIONS
from eeg2_reference import expected

from berg_core.testing_differentiable import (
    assert_paths_match,
    backbone_bound,
    float32_weights,
    float64_tolerance,
    run_paths,
)

torch = pytest.importorskip("torch")

VIT = "eeg-things_eeg_2-vit_b_32"


def _bound(weights: dict, features: np.ndarray, readout: np.ndarray) -> np.ndarray:
    """The readout's float32 bound plus each repetition's propagated backbone bound."""
    scale = weights["scaler_param"]["scale_"]
    backbone = np.stack(
        [
            backbone_bound(
                features,
                scale,
                weights["pca_param"][r]["components_"],
                weights["reg_param"][r]["coef_"],
            )
            for r in REPETITIONS
        ],
        axis=1,
    )
    return readout + backbone.reshape(readout.shape)


def test_differentiable_path_is_encode_in_float64_and_float32(berg):
    weights = make_weights(FOLDERS[VIT], 1, generation="B")
    write_model_files(berg.berg_dir, VIT, 1, weights=weights)
    channels = ["Oz", "Cz", "Fp1", "Oz"]  # order and repeats kept
    mask = np.zeros(140, dtype=int)
    mask[[0, 20, 21, 139]] = 1
    run = run_paths(berg, VIT, selection={"channels": channels, "timepoints": mask}, seed=5)
    rounded = float32_weights(weights)
    exact, readout = expected(rounded, run.features)
    keep = np.ix_(range(2), range(4), [CHANNELS.index(c) for c in channels], np.flatnonzero(mask))
    exact, bound = exact[keep], _bound(rounded, run.features, readout)[keep]
    assert_paths_match(run, exact, bound, (2, 4, 4, 4))
    # the float64 comparison is fine enough to tell the float64 weights from the float32 ones
    unrounded, _ = expected(weights, run.features)
    assert np.any(np.abs(run.twin - unrounded[keep]) > float64_tolerance(bound))
