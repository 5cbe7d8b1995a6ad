"""How far two float32 computations of the same responses may differ: bounds from the arithmetic.

BLAS libraries pick different kernels (blocking, summation order, FMA use) for different CPUs,
thread counts, batch shapes and column counts, so float32 results of one formula differ in the
last bits between machines and between batch sizes. A test that compares two such results needs
a tolerance, and the tolerance must follow from the computation, not from what one machine
printed.

The model is the probabilistic rounding-error analysis of Higham and Mary ("A new approach to
probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019): rounding errors are
independent, mean-zero and at most ``u = 2**-24`` (float32) relative to each partial result, so a
float32 sum of ``n`` products ``sum(a_i * b_i)`` computed in any order has an error whose
standard deviation is at most

    sqrt(n) * u * sum(|a_i * b_i|)

(each of its at most ``n`` roundings contributes at most ``u * sum(|a_i b_i|)``). Errors already
in the inputs ``x`` of a linear layer ``y = W x + b`` (standard deviations ``s``) propagate as
independent terms, so the layer's output error has standard deviation

    sqrt(W**2 @ s**2 + (sqrt(n + 1) * u * (|W| |x| + |b|))**2)

ReLU, max pooling, dropout (evaluation) and flattening are 1-Lipschitz and pass ``s`` on; average
pooling averages it. Everything is computed in float64 from the exact (float64) intermediate
values. A computed value lies within ``LAMBDA = 8`` standard deviations of the exact one except
with probability below ``2 exp(-LAMBDA**2 / 2) = 2.5e-14`` (Hoeffding), so a test checking a
million elements fails by chance with probability below ``3e-8``; two float32 computations of
the same responses differ by at most ``2 * LAMBDA`` standard deviations. The deterministic worst
case (errors of one sign, ``n * u`` instead of ``sqrt(n) * u``, amplified by ``|W|`` at every
layer) is many orders of magnitude larger through eight layers and would let real mistakes pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Unit roundoff of float32.
U = 2.0**-24
#: Standard deviations a float32 result may lie from the exact one (see the module docstring).
LAMBDA = 8.0


def rounding_sd(n: int, magnitude: Any) -> Any:
    """Standard deviation bound of the rounding error of a sum of *n* terms of *magnitude*.

    *magnitude* is ``sum(|terms|)`` (an array or tensor of them).
    """
    return np.sqrt(n) * U * magnitude


def _combine(propagated: Any, rounding: Any) -> Any:
    return (propagated + rounding**2) ** 0.5


def _backbone_sd(backbone: Any, images: Any, nodes: list[str]) -> dict[str, Any]:
    """Exact (float64) node outputs and the standard deviation of their float32 errors.

    Supports the module types of torchvision's AlexNet: ``Conv2d``, ``Linear``, ``ReLU``,
    ``MaxPool2d``, ``AdaptiveAvgPool2d``, ``Dropout`` and the flatten between its blocks.
    Returns ``{node: (value, sd)}`` for the requested nodes.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    x = images.to(torch.float64)
    # the input is itself the result of a few float32 operations (resize, /255, -mean, /std)
    sd = 4 * U * (x.abs() + 3.0)
    found: dict[str, Any] = {}

    def step(module: nn.Module, x: Any, sd: Any) -> tuple[Any, Any]:
        if isinstance(module, nn.Conv2d):
            w = module.weight.detach().to(torch.float64)
            b = module.bias.detach().to(torch.float64)
            conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
            magnitude = F.conv2d(x.abs(), w.abs(), b.abs(), **conv)
            propagated = F.conv2d(sd**2, w**2, None, **conv)
            sd = _combine(propagated, rounding_sd(w[0].numel() + 1, magnitude))
            return F.conv2d(x, w, b, **conv), sd
        if isinstance(module, nn.Linear):
            w = module.weight.detach().to(torch.float64)
            b = module.bias.detach().to(torch.float64)
            magnitude = x.abs() @ w.abs().T + b.abs()
            sd = _combine(sd**2 @ (w**2).T, rounding_sd(w.shape[1] + 1, magnitude))
            return x @ w.T + b, sd
        if isinstance(module, nn.MaxPool2d):
            return module(x), module(sd)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            window = int(np.prod(x.shape[-2:])) // int(np.prod(module(x).shape[-2:]))
            return module(x), module(sd) + rounding_sd(window, module(x.abs()))
        if isinstance(module, (nn.ReLU, nn.Dropout)):
            return module(x), sd
        raise TypeError(f"no error model for {type(module).__name__}")

    with torch.no_grad():
        for block in ("features", "avgpool", "classifier"):
            modules = getattr(backbone, block)
            named = [("", modules)] if block == "avgpool" else list(modules.named_children())
            for name, module in named:
                x, sd = step(module, x, sd)
                node = f"{block}.{name}" if name else block
                if node in nodes:
                    found[node] = (x, sd)
            if block == "avgpool":
                x, sd = torch.flatten(x, 1), torch.flatten(sd, 1)
    return found


def feature_sd(backbone: Any, images: Any, nodes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Exact features ``(B, D)`` (nodes flattened and concatenated) and their error's sd.

    Parameters
    ----------
    backbone : torchvision AlexNet
        In evaluation mode.
    images : torch.Tensor
        ``(B, 3, H, W)`` preprocessed images (float32).
    nodes : list of str
        Feature nodes, in order.
    """
    import torch

    found = _backbone_sd(backbone, images, nodes)
    values = torch.hstack([torch.flatten(found[node][0], 1) for node in nodes])
    sds = torch.hstack([torch.flatten(found[node][1], 1) for node in nodes])
    return values.numpy(), sds.numpy()


def _rows(params: Mapping[str, Any], index: Any) -> tuple[np.ndarray, np.ndarray]:
    keep = slice(None) if index is None else np.asarray(index)
    return params["coef_"][keep].astype(np.float64), params["intercept_"][keep].astype(np.float64)


def _projection(features: np.ndarray, weights: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """Standardised-and-centred features, and their PCA projection, in float64."""
    scaler, pca = weights["scaler_param"], weights["pca_param"]
    centred = features - scaler["mean_"].astype(np.float64)
    standard = centred / scaler["scale_"].astype(np.float64)
    shifted = standard - pca["mean_"].astype(np.float64)
    return centred, standard, shifted, shifted @ pca["components_"].astype(np.float64).T


def exact_readout(
    features: np.ndarray, weights: Mapping[str, Any], rows: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Scaler -> PCA -> regression in float64: the exact responses the bounds are relative to."""
    projected = _projection(features, weights)[-1]
    out = {}
    for name, index in rows.items():
        coef, intercept = _rows(weights[f"{name}_reg_param"], index)
        out[name] = projected @ coef.T + intercept
    return out


def readout_bound(
    features: np.ndarray,
    feature_error_sd: np.ndarray,
    weights: Mapping[str, Any],
    rows: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """``LAMBDA`` standard deviations of the float32 error of each response.

    Parameters
    ----------
    features : ndarray
        ``(B, D)`` exact features.
    feature_error_sd : ndarray
        ``(B, D)`` standard deviation of the error of the float32 features the readout is given.
    weights : mapping
        The reference weights dict (``scaler_param``, ``pca_param``, ``<name>_reg_param``).
    rows : mapping of str to index or None
        Output name -> the rows (vertices) kept, ``None`` for all.

    Returns
    -------
    dict of str to ndarray
        Output name -> ``(B, n_rows)`` float64 bound of ``|float32 result - exact|``.
    """
    centred, standard, shifted, projected = _projection(features, weights)
    scale = np.abs(weights["scaler_param"]["scale_"].astype(np.float64))
    # three elementwise operations, one rounding each
    sd = np.sqrt(feature_error_sd**2 + (U * centred) ** 2) / scale
    sd = np.sqrt(sd**2 + (U * standard) ** 2 + (U * shifted) ** 2)
    components = weights["pca_param"]["components_"].astype(np.float64)
    magnitude = np.abs(shifted) @ np.abs(components).T
    sd = _combine(sd**2 @ (components**2).T, rounding_sd(components.shape[1], magnitude))
    sd = np.sqrt(sd**2 + (U * projected) ** 2)  # the reference rounds it to float32
    bounds = {}
    for name, index in rows.items():
        coef, intercept = _rows(weights[f"{name}_reg_param"], index)
        magnitude = np.abs(projected) @ np.abs(coef).T + np.abs(intercept)
        out_sd = _combine(sd**2 @ (coef**2).T, rounding_sd(coef.shape[1] + 1, magnitude))
        bounds[name] = LAMBDA * out_sd
    return bounds


def assert_within(actual: np.ndarray, expected: np.ndarray, bound: np.ndarray) -> None:
    """Assert ``|actual - expected| <= bound`` elementwise (same shape), reporting the worst."""
    assert actual.shape == expected.shape == bound.shape, (
        actual.shape,
        expected.shape,
        bound.shape,
    )
    if actual.size == 0:
        return
    excess = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) / bound
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    assert excess[worst] <= 1.0, (
        f"|actual - expected| exceeds the float32 error bound {excess[worst]:.3g} times at "
        f"{worst}: actual {actual[worst]!r}, expected {expected[worst]!r}, bound {bound[worst]:.3g}"
    )
