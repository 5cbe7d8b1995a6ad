"""The independent computation: torchvision's ViT-B/32 with module hooks, scikit-learn.

Features are taken as the reference's torchextractor takes them (forward hooks on the 12
``encoder.layers.encoder_layer_i`` modules); scikit-learn objects are rebuilt from the stored
attributes and run in float64; the tolerance follows from the float32 arithmetic of berg's
readout (probabilistic rounding-error model, as plugins/berg-nsd/tests/error_bounds.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchvision
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

U = 2.0**-24  # float32 unit roundoff
LAMBDA = 8.0  # standard deviations: chance failure below 2.5e-14 per element


def vit_features(images: np.ndarray) -> np.ndarray:
    """(N, 460800) float32: the 12 encoder blocks' outputs, flattened and concatenated."""
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    net = torchvision.models.vit_b_32(weights=weights).eval()
    outputs: list[torch.Tensor] = []
    hooks = [
        net.encoder.layers[i].register_forward_hook(lambda m, i, o: outputs.append(o))
        for i in range(12)
    ]
    with torch.no_grad():
        net(weights.transforms()(torch.from_numpy(images)))
    for hook in hooks:
        hook.remove()
    return torch.cat([o.flatten(1) for o in outputs], dim=1).numpy()


def _object(cls: type, attributes: dict[str, Any]) -> Any:
    obj = cls()
    for key, value in attributes.items():
        setattr(obj, key, value)
    return obj


def expected(weights: dict[str, Any], x: np.ndarray, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """The reference's responses ``(N, *shape)`` and their float32 tolerance, from features."""
    scaler = _object(StandardScaler, weights["scaler_param"])
    pca = _object(PCA, weights["pca_param"])
    reg = _object(LinearRegression, weights["reg_param"])
    scaled = scaler.transform(x.astype(np.float64))
    z = pca.transform(scaled)
    out = reg.predict(z)
    comp = np.asarray(pca.components_, np.float64)
    centred = scaled - pca.mean_
    dim, k = comp.shape[1], comp.shape[0]
    # z: float32 dot products of length D over inputs with relative errors <= 3u
    sd_z = np.sqrt(dim + 1) * U * (np.abs(centred) @ np.abs(comp).T)
    sd_z = np.sqrt(sd_z**2 + (3 * U) ** 2 * ((centred**2) @ (comp**2).T))
    coef = np.asarray(reg.coef_, np.float64)
    sd_y = np.sqrt((sd_z**2) @ (coef**2).T)
    sd_y += np.sqrt(k + 1) * U * (np.abs(z) @ np.abs(coef).T + np.abs(reg.intercept_))
    bound = LAMBDA * sd_y + 1e-30
    return out.reshape(x.shape[0], *shape), bound.reshape(x.shape[0], *shape)


def assert_within(actual: np.ndarray, wanted: np.ndarray, bound: np.ndarray) -> None:
    """Every element of *actual* within *bound* of *wanted*."""
    assert actual.shape == wanted.shape, (actual.shape, wanted.shape)
    excess = np.abs(actual.astype(np.float64) - wanted) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"off by {excess[worst]:.3g} beyond the bound at {worst}"
