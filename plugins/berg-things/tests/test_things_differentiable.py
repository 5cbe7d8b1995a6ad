"""The THINGS fMRI model's differentiable path computes encode's function (ViT-B/32, issue 16).

Method (berg_core.testing_differentiable): in float64 the differentiable path (its own
preprocessing, nodes, readout and ROI voxel selection, every tensor cast) equals an independent
float64 computation - torchvision with forward hooks, scikit-learn - of the function ``encode``
computes (weights rounded to float32, as berg loads them) within the float64 image of the
float32 bound; in float32 both ``encode`` and the differentiable path (with gradients, hence the
unfused attention kernels) lie within that float32 bound of the float64 result.
"""

from __future__ import annotations

import numpy as np
import pytest
from berg_things.card import MODEL_ID, WEIGHTS_FILE

from berg_core.safe_npy import load_pickled_npy
from berg_core.testing import assert_within, reference_readout
from berg_core.testing_differentiable import (
    backbone_bound,
    float32_weights,
    float64_tolerance,
    float64_twin,
    vit_b_32_features64,
)

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_differentiable_path_is_encode_in_float64_and_float32(berg, berg_dir):
    images = np.random.default_rng(6).integers(0, 256, (2, 3, 256, 256), dtype=np.uint8)
    x = torch.from_numpy(images).float() / 255  # what encode reads from the uint8 images
    with berg.get_encoding_model(MODEL_ID, subject=1, device="cpu", selection={"roi": "V1"}) as m:
        encoded = berg.encode(m, images, show_progress=False)
        voxels = np.asarray(m.column_indices()["responses"])
        pixels = x.clone().requires_grad_(True)
        (got,) = m.differentiable()(pixels)
        got.pow(2).mean().backward()
        (twin,) = float64_twin(m)(x.double())
        mean, std = m.preprocessor.mean.flatten(), m.preprocessor.std.flatten()
    features = vit_b_32_features64(x.double(), mean.tolist(), std.tolist())
    stored = load_pickled_npy(berg_dir / WEIGHTS_FILE.format(subject=1))
    weights = float32_weights(stored)
    reg = {key: weights["reg_param"][key] for key in ("coef_", "intercept_", "n_features_in_")}
    reg["coef_"], reg["intercept_"] = reg["coef_"][voxels], reg["intercept_"][voxels]
    selected = {**weights, "reg_param": reg}
    exact, readout = reference_readout(selected, features, (len(voxels),))
    bound = readout + backbone_bound(
        features,
        weights["scaler_param"]["scale_"],
        weights["pca_param"]["components_"],
        reg["coef_"],
    )
    assert twin.dtype == torch.float64 and got.dtype == torch.float32
    assert got.shape == twin.shape == encoded.shape == (2, len(voxels)) and len(voxels) > 0
    # float64: the same function, to float64 rounding
    assert_within(twin.numpy(), exact, float64_tolerance(bound))
    # float32: encode and the differentiable path within the float32 bound of it
    assert_within(encoded, exact, bound)
    assert_within(got.detach().numpy(), exact, bound)
    assert torch.isfinite(pixels.grad).all() and (pixels.grad != 0).float().mean() > 0.5
