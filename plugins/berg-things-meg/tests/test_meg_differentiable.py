"""The MEG model's differentiable path computes encode's function (ViT-B/32, issue 16).

Its sensor/time selection is checked against the independent float64 reference; the method
(float64 twin, float32 bound) is berg_core.testing_differentiable's.
"""

from __future__ import annotations

import numpy as np
import pytest
from berg_things_meg.fixture import SENSOR_NAMES, make_weights, write_model_files
from berg_things_meg.plugin import MODEL_ID

from berg_core.testing import reference_readout
from berg_core.testing_differentiable import (
    assert_paths_match,
    backbone_bound,
    float32_weights,
    float64_tolerance,
    run_paths,
)

torch = pytest.importorskip("torch")

SHAPE = (271, 281)


def test_differentiable_path_is_encode_in_float64_and_float32(berg, tmp_path):
    write_model_files(berg.berg_dir, 1)
    sensors = np.flatnonzero(np.char.startswith(np.array(SENSOR_NAMES), "MLO"))
    mask = np.zeros(SHAPE[1], dtype=int)
    mask[[0, 7, 150, 280]] = 1
    run = run_paths(berg, MODEL_ID, selection={"sensors": ["MLO"], "timepoints": mask}, seed=4)
    weights = float32_weights(make_weights(1))
    exact, readout = reference_readout(weights, run.features, SHAPE)
    backbone = backbone_bound(
        run.features,
        weights["scaler_param"]["scale_"],
        weights["pca_param"]["components_"],
        weights["reg_param"]["coef_"],
    ).reshape(-1, *SHAPE)
    keep = np.ix_(range(2), sensors, np.flatnonzero(mask))
    exact, bound = exact[keep], (readout + backbone)[keep]
    assert_paths_match(run, exact, bound, (2, len(sensors), 4))
    # the float64 comparison is fine enough to tell the float64 weights from the float32 ones
    unrounded, _ = reference_readout(make_weights(1), run.features, SHAPE)
    assert np.any(np.abs(run.twin - unrounded[keep]) > float64_tolerance(bound))
