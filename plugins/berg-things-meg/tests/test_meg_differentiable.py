"""The MEG model's differentiable path computes encode's function (ViT-B/32, issue 16).

Method (berg_core.testing_differentiable): in float64 the differentiable path (its own
preprocessing, nodes, readout and sensor/time selection, every tensor cast) equals an independent
float64 computation - torchvision with forward hooks, scikit-learn - of the function ``encode``
computes (weights rounded to float32, as berg loads them) within the float64 image of the
float32 bound; in float32 both ``encode`` and the differentiable path (with gradients, hence the
unfused attention kernels) lie within that float32 bound of the float64 result.
"""

from __future__ import annotations

import numpy as np
import pytest
from berg_things_meg.fixture import SENSOR_NAMES, make_weights, write_model_files
from berg_things_meg.plugin import MODEL_ID

from berg_core.testing import assert_within, reference_readout
from berg_core.testing_differentiable import (
    backbone_bound,
    float32_weights,
    float64_tolerance,
    float64_twin,
    vit_b_32_features64,
)

torch = pytest.importorskip("torch")

SHAPE = (271, 281)


def test_differentiable_path_is_encode_in_float64_and_float32(berg, tmp_path):
    write_model_files(berg.berg_dir, 1)
    images = np.random.default_rng(4).integers(0, 256, (2, 3, 256, 256), dtype=np.uint8)
    x = torch.from_numpy(images).float() / 255  # what encode reads from the uint8 images
    sensors = np.flatnonzero(np.char.startswith(np.array(SENSOR_NAMES), "MLO"))
    mask = np.zeros(SHAPE[1], dtype=int)
    mask[[0, 7, 150, 280]] = 1
    selection = {"sensors": ["MLO"], "timepoints": mask}
    with berg.get_encoding_model(MODEL_ID, subject=1, device="cpu", selection=selection) as model:
        encoded = berg.encode(model, images, show_progress=False)
        pixels = x.clone().requires_grad_(True)
        (got,) = model.differentiable()(pixels)
        got.pow(2).mean().backward()
        (twin,) = float64_twin(model)(x.double())
        mean, std = model.preprocessor.mean.flatten(), model.preprocessor.std.flatten()
    features = vit_b_32_features64(x.double(), mean.tolist(), std.tolist())
    weights = float32_weights(make_weights(1))
    exact, readout = reference_readout(weights, features, SHAPE)
    backbone = backbone_bound(
        features,
        weights["scaler_param"]["scale_"],
        weights["pca_param"]["components_"],
        weights["reg_param"]["coef_"],
    ).reshape(-1, *SHAPE)
    keep = np.ix_(range(2), sensors, np.flatnonzero(mask))
    exact, bound = exact[keep], (readout + backbone)[keep]
    assert twin.dtype == torch.float64 and got.dtype == torch.float32
    assert got.shape == twin.shape == encoded.shape == (2, len(sensors), 4)
    # float64: the same function, to float64 rounding
    assert_within(twin.numpy(), exact, float64_tolerance(bound))
    # ... and fine enough to tell the float64 weights from the float32 ones encode uses
    unrounded, _ = reference_readout(make_weights(1), features, SHAPE)
    assert np.any(np.abs(twin.numpy() - unrounded[keep]) > float64_tolerance(bound))
    # float32: encode and the differentiable path within the float32 bound of it
    assert_within(encoded, exact, bound)
    assert_within(got.detach().numpy(), exact, bound)
    assert torch.isfinite(pixels.grad).all() and (pixels.grad != 0).float().mean() > 0.5
