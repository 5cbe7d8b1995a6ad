"""Test kit for the differentiable path (``EncodingModel.differentiable``) of ViT-B/32 families.

The differentiable path and ``encode`` run different float32 kernels (with gradients enabled,
``nn.MultiheadAttention`` leaves its fused inference path), and no worst-case float32 error model
of a ViT exists. So the families' tests compare in two precisions::

    twin = float64_twin(model)              # the same path, every parameter in float64
    features = vit_b_32_features64(x, m, s) # independent: torchvision + forward hooks, float64

* in float64 the differentiable path (its preprocessing, nodes, readout and picks, cast by
  :func:`float64_twin`) must equal the independent computation (:func:`vit_b_32_features64`
  and scikit-learn in float64) within :func:`float64_tolerance`: rounding there is ~1e-16, so
  any difference of function shows;
* in float32 both ``encode`` and the differentiable path must lie within the float32 bound
  of that float64 result: the readout's rounding (:func:`berg_core.testing.reference_readout`)
  plus the backbone's, propagated through the readout (:func:`backbone_bound`).

The bounds rest on first-order rounding-error analysis (every computed result equals the exact
one plus a sum of terms, each a rounding error of at most the unit roundoff u times the
sensitivity of the output to that operation): a bound linear in u carries over between
precisions (:func:`float64_tolerance`). The model parameters of the float64 reference are the
stored weights rounded to float32 (:func:`float32_weights`), as ``encode`` uses them.
Nothing here downloads anything; torch, torchvision and scikit-learn are imported when called
(``import berg_core.testing_differentiable`` imports no torch).

This is test code: :func:`float64_twin` copies the network, the model is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LAMBDA",
    "U32",
    "U64",
    "PathRun",
    "assert_paths_match",
    "backbone_bound",
    "float32_weights",
    "float64_tolerance",
    "float64_twin",
    "run_paths",
    "vit_b_32_features64",
    "vit_feature_rounding",
]

#: Unit roundoffs of float32 and float64.
U32 = 2.0**-24
U64 = 2.0**-53


def _cast(value: Any, dtype: Any) -> Any:
    """*value* with every floating-point tensor in it (containers and attributes) cast."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, Mapping):
        return {key: _cast(item, dtype) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(item, dtype) for item in value)
    return value


def _cast_readout(readout: Any, dtype: Any) -> Any:
    """A shallow copy of *readout* whose tensor attributes are cast (the original is kept)."""
    twin = copy.copy(readout)
    for name, value in vars(readout).items():
        setattr(twin, name, _cast(value, dtype))
    return twin


def float64_twin(model: Any) -> Any:
    """The differentiable path of *model*, computed in float64 throughout.

    The same :class:`~berg_core.torchkit.DifferentiableEncoder` ``model.differentiable()``
    builds - the model's own preprocessing function, nodes, readout function and picks - over
    a float64 copy of the network and of the readout's tensors; images are taken in float64.
    The preprocessing constants (``mean``, ``std``) stay the float32 values ``encode`` uses
    (promoted exactly), so the twin computes the function ``encode`` computes, rounded at
    float64's unit roundoff instead of float32's.

    Parameters
    ----------
    model : FeatureReadoutModel
        An open model with a differentiable path.

    Returns
    -------
    DifferentiableEncoder
        Input ``(B, 3, H, W)`` float images in [0, 1]; output one float64 tensor per output.
    """
    import torch

    from berg_core.torchkit.differentiable import DifferentiableEncoder, differentiable_readout

    class Float64Encoder(DifferentiableEncoder):
        """Takes its images in float64."""

        def check_images(self, images: Any) -> torch.Tensor:
            super().check_images(images)  # the same checks
            return images.to(self.device, torch.float64)

    path = model.differentiable()
    if not getattr(model.preprocessor, "_preset", False):
        raise ValueError("float64_twin: only torchvision-preset preprocessing is cast exactly")
    return Float64Encoder(
        model_id=path.model_id,
        transform=path.transform,
        network=copy.deepcopy(path.network).to(torch.float64),
        nodes=path.nodes,
        readout=differentiable_readout(_cast_readout(model.readout, torch.float64)),
        shapes=path.shapes,
        positions=[
            tuple(None if index is None else index.cpu().numpy() for index in kept)
            for kept in path._picks
        ],
        device=path.device,
        names=path.names,
    )


def vit_b_32_features64(images: Any, mean: Any, std: Any) -> np.ndarray:
    """``(N, 460800)`` float64: ViT-B/32's 12 encoder blocks' outputs, independently.

    torchvision's ``vit_b_32`` with the cached ``IMAGENET1K_V1`` weights cast to float64, the
    blocks' outputs taken with forward hooks (as the reference's torchextractor), on
    ``(images - mean) / std`` centre-cropped to 224: *images* must be ``(N, 3, 256, 256)``
    floats in [0, 1], where the weights' resize to 256 is the identity.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        ``(N, 3, 256, 256)`` in [0, 1].
    mean, std : sequence of float
        The per-channel normalisation, as ``encode`` uses it (the float32 constants).
    """
    import torch
    import torchvision

    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    if x.shape[-2:] != (256, 256):
        raise ValueError(f"vit_b_32_features64 takes 256 x 256 images, got {tuple(x.shape)}")
    x = x[..., 16:240, 16:240]  # centre crop 224 of 256
    m = torch.as_tensor(np.asarray(mean, np.float64)).view(-1, 1, 1)
    s = torch.as_tensor(np.asarray(std, np.float64)).view(-1, 1, 1)
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    net = torchvision.models.vit_b_32(weights=weights).eval().to(torch.float64)
    outputs: list[Any] = []
    hooks = [
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        for block in net.encoder.layers
    ]
    with torch.no_grad():
        net((x - m) / s)
    for hook in hooks:
        hook.remove()
    return torch.cat([o.flatten(1) for o in outputs], dim=1).numpy()


def float32_weights(weights: Any) -> Any:
    """*weights* (nested dicts of arrays) with every float array rounded to float32, as float64.

    The parameters ``encode`` computes with: berg loads readouts in float32.
    """
    if isinstance(weights, Mapping):
        return {key: float32_weights(value) for key, value in weights.items()}
    if isinstance(weights, np.ndarray) and weights.dtype.kind == "f":
        return weights.astype(np.float32).astype(np.float64)
    return weights


#: ViT-B/32's dot-product lengths per encoder block: q/k/v (768), attention scores (64),
#: attention-weighted values (50 tokens), output projection (768), MLP in (768) and out (3072).
_VIT_BLOCK_LENGTHS = (768, 64, 50, 768, 768, 3072)
_VIT_BLOCKS = 12
#: Standard deviations a float32 result may lie from the exact one (as berg_core.testing).
LAMBDA = 8.0


def vit_feature_rounding() -> float:
    """rho: the standard deviation of a ViT-B/32 feature's float32 error, relative to it.

    Probabilistic rounding-error model (Higham and Mary 2019): a length-n float32 dot product
    has an error of standard deviation at most ``sqrt(n) * u`` times the sum of its terms'
    magnitudes. The 12 blocks add their products' errors into the residual stream, which the
    block outputs are; independent errors add in quadrature, each product taken as well
    conditioned (its terms' magnitudes summing to about its own: layer norm rescales every
    block's input), which the float64 comparison checks it is not far from:
    ``rho = u * sqrt(12 * (768 + 64 + 50 + 768 + 768 + 3072)) = 257 u``.
    """
    return U32 * float(np.sqrt(_VIT_BLOCKS * sum(_VIT_BLOCK_LENGTHS)))


def backbone_bound(
    features: np.ndarray, scale: np.ndarray, components: np.ndarray, coef: np.ndarray
) -> np.ndarray:
    """``(N, n_rows)``: LAMBDA standard deviations of the responses' error from the features'.

    Each feature ``f_j`` carries a float32 error of standard deviation ``rho |f_j|``
    (:func:`vit_feature_rounding`), independent across features; the scaler divides it by
    ``scale_j``, the PCA and the regression are linear maps, so the variances propagate
    through the squared weights.

    Parameters
    ----------
    features : numpy.ndarray
        ``(N, D)`` float64 features.
    scale, components, coef : numpy.ndarray
        The scaler's ``scale_`` ``(D,)``, the PCA's ``components_`` ``(k, D)`` and the
        regression's ``coef_`` ``(n_rows, k)``.
    """
    rho = vit_feature_rounding()
    var_z = ((rho * features / scale) ** 2) @ (np.asarray(components, np.float64) ** 2).T
    return LAMBDA * np.sqrt(var_z @ (np.asarray(coef, np.float64) ** 2).T)


def float64_tolerance(float32_bound: np.ndarray) -> np.ndarray:
    """The float64 counterpart of a float32 error bound of the same computation.

    To first order the rounding error of a computation is a sum of terms ``delta_i * s_i``
    with ``|delta_i| <= u`` and sensitivities ``s_i`` that do not depend on u: a bound linear
    in u carries over from float32 to float64 by the factor ``U64 / U32 = 2**-29``; twice that,
    as two float64 computations are compared.
    """
    return 2 * (U64 / U32) * np.asarray(float32_bound)


@dataclass
class PathRun:
    """What :func:`run_paths` computed on one model and one batch of images.

    Attributes
    ----------
    encoded : numpy.ndarray
        ``encode``'s output (float32).
    got : torch.Tensor
        The differentiable path's output (float32, with a graph).
    twin : numpy.ndarray
        :func:`float64_twin`'s output (float64).
    grad : torch.Tensor
        The gradient of ``mean(got ** 2)`` with respect to the pixels.
    features : numpy.ndarray
        ``(N, 460800)`` float64 from :func:`vit_b_32_features64` on the same images.
    columns : dict of str to numpy.ndarray
        The open model's ``column_indices()`` (which rows a selection kept).
    """

    encoded: np.ndarray
    got: Any
    twin: np.ndarray
    grad: Any
    features: np.ndarray
    columns: dict[str, np.ndarray]


def run_paths(
    berg: Any, model_id: str, *, selection: Any, seed: int, subject: int = 1, n_images: int = 2
) -> PathRun:
    """Run ``encode``, the differentiable path and its float64 twin on random 256 x 256 images.

    The images are ``(n_images, 3, 256, 256)`` uint8 from ``default_rng(seed)``; the
    differentiable path takes them as ``encode`` reads them (float in [0, 1]), with gradients,
    and ``mean(output ** 2)`` is backpropagated to the pixels. The independent float64 features
    use the model's own (float32) normalisation constants.

    Parameters
    ----------
    berg : BERG
        Sees the model's plugin and files.
    model_id : str
    selection : object
        Passed to ``get_encoding_model``.
    seed : int
        Seed of the random images.
    subject : int, optional
    n_images : int, optional

    Returns
    -------
    PathRun
    """
    import torch

    shape = (n_images, 3, 256, 256)
    images = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    x = torch.from_numpy(images).float() / 255  # what encode reads from the uint8 images
    with berg.get_encoding_model(
        model_id, subject=subject, device="cpu", selection=selection
    ) as model:
        encoded = berg.encode(model, images, show_progress=False)
        columns = model.column_indices()
        pixels = x.clone().requires_grad_(True)
        (got,) = model.differentiable()(pixels)
        got.pow(2).mean().backward()
        (twin,) = float64_twin(model)(x.double())
        mean, std = model.preprocessor.mean.flatten(), model.preprocessor.std.flatten()
    features = vit_b_32_features64(x.double(), mean.tolist(), std.tolist())
    return PathRun(encoded, got, twin.numpy(), pixels.grad, features, columns)


def assert_paths_match(
    run: PathRun, exact: np.ndarray, bound: np.ndarray, shape: tuple[int, ...]
) -> None:
    """The checks every family makes on a :class:`PathRun`.

    * the twin is float64, the differentiable path float32;
    * ``encoded``, ``got`` and ``twin`` have *shape*;
    * float64: the twin equals *exact* (the independent float64 computation with the weights
      rounded to float32) within :func:`float64_tolerance` of *bound*;
    * float32: ``encode`` and the differentiable path lie within *bound* of *exact*;
    * the gradient is finite and non-zero at more than half the pixels.

    Parameters
    ----------
    run : PathRun
    exact : numpy.ndarray
        The float64 reference, picked as the model's selection.
    bound : numpy.ndarray
        The float32 bound, as *exact*.
    shape : tuple of int
        The selected output shape.
    """
    import torch

    from berg_core.testing import assert_within

    assert run.twin.dtype == np.float64 and run.got.dtype == torch.float32
    assert run.got.shape == run.twin.shape == run.encoded.shape == tuple(shape), (
        run.got.shape,
        run.twin.shape,
        run.encoded.shape,
        shape,
    )
    # float64: the same function, to float64 rounding
    assert_within(run.twin, exact, float64_tolerance(bound))
    # float32: encode and the differentiable path within the float32 bound of it
    assert_within(run.encoded, exact, bound)
    assert_within(run.got.detach().numpy(), exact, bound)
    assert torch.isfinite(run.grad).all() and (run.grad != 0).float().mean() > 0.5
