"""The independent computation: torchvision's transforms and feature extractor, scikit-learn.

scikit-learn objects are rebuilt from the stored attributes as the reference toolkit rebuilds
them, and run in float64; the tolerance follows from the float32 arithmetic of berg's readout
(probabilistic rounding-error model of Higham and Mary, as plugins/berg-nsd/tests/error_bounds.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchvision
from berg_things_eeg2.layout import CHANNELS, N_TIMES, REPETITIONS
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler
from torchvision.models.feature_extraction import create_feature_extractor

U = 2.0**-24  # float32 unit roundoff
LAMBDA = 8.0  # standard deviations: chance failure below 2.5e-14 per element
ALEXNET = (
    "features.2",
    "features.5",
    "features.7",
    "features.9",
    "features.12",
    "classifier.2",
    "classifier.5",
    "classifier.6",
)
VIT = tuple(f"encoder.layers.encoder_layer_{i}.add_1" for i in range(12))


def features(model_id: str, images: np.ndarray) -> np.ndarray:
    """Backbone features as the reference computes them: (N, D) float32."""
    models = torchvision.models
    if model_id.endswith("vit_b_32"):
        weights = models.ViT_B_32_Weights.IMAGENET1K_V1
        net, nodes = models.vit_b_32(weights=weights), VIT
    else:
        weights = models.AlexNet_Weights.IMAGENET1K_V1
        if model_id.endswith("untrained"):
            torch.manual_seed(20200220)
            net = models.alexnet(weights=None)
        else:
            net = models.alexnet(weights=weights)
        nodes = ALEXNET
    extractor = create_feature_extractor(net.eval(), return_nodes=list(nodes))
    with torch.no_grad():
        out = extractor(weights.transforms()(torch.from_numpy(images)))
    return torch.cat([out[n].flatten(1) for n in nodes], dim=1).numpy()


def _object(cls: type, attributes: Any) -> Any:
    if not isinstance(attributes, dict):
        return attributes  # already a scikit-learn object (generation C)
    obj = cls()
    for key, value in attributes.items():
        setattr(obj, key, value)
    return obj


def expected(weights: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's responses (N, 4, 63, 140) and their float32 tolerance, from features."""
    scaler = _object(StandardScaler, weights["scaler_param"])
    pca = weights["pca_param"]
    pcas = [pca] * 4 if "components_" in pca else [pca[r] for r in REPETITIONS]
    scaled = scaler.transform(x.astype(np.float64))
    out, bound = [], []
    for r, pca_r in zip(REPETITIONS, pcas, strict=True):
        pca_obj = _object(PCA, pca_r)
        reg = _object(LinearRegression, weights["reg_param"][r])
        z = pca_obj.transform(scaled)
        out.append(reg.predict(z))
        comp = np.asarray(pca_obj.components_, np.float64)
        centred = scaled - pca_obj.mean_
        dim, k = comp.shape[1], comp.shape[0]
        # z: float32 dot products of length D over inputs with relative errors <= 3u
        sd_z = np.sqrt(dim + 1) * U * (np.abs(centred) @ np.abs(comp).T)
        sd_z = np.sqrt(sd_z**2 + (3 * U) ** 2 * ((centred**2) @ (comp**2).T))
        coef = np.asarray(reg.coef_, np.float64)
        sd_y = np.sqrt((sd_z**2) @ (coef**2).T)
        sd_y += np.sqrt(k + 1) * U * (np.abs(z) @ np.abs(coef).T + np.abs(reg.intercept_))
        bound.append(LAMBDA * sd_y + 1e-30)
    shape = (x.shape[0], len(REPETITIONS), len(CHANNELS), N_TIMES)
    return np.stack(out, 1).reshape(shape), np.stack(bound, 1).reshape(shape)
