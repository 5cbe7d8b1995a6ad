"""An encoder's whole torch path as one differentiable module: images in, responses out.

``EncodingModel.encode`` runs under :func:`torch.inference_mode`, writes into reused buffers and
standardises features in place, which is fast but leaves nothing to differentiate. For gradient
work (image synthesis, attribution) :class:`DifferentiableEncoder` runs the *same* parts of a
:class:`~berg_core.torchkit.FeatureReadoutModel` - its preprocessing, its feature extractor, its
readout, its selection and the core's picks along labelled dims - with plain, out-of-place torch
operations that autograd can follow::

    module = model.differentiable()            # a torch.nn.Module, parameters frozen
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    (responses,) = module(images)              # what encode returns, as tensors
    responses.mean().backward()                # images.grad: (2, 3, 64, 64)

Input: ``(B, 3, H, W)`` floating-point images with values in [0, 1] (what ``encode`` reads from a
float32 array). Output: one tensor per output of the model, ``(B, *model.shapes()[i])``, the same
columns, in the same order, as :meth:`berg_core.EncodingModel.encode` returns.

Numerically the module computes the float32 operations ``encode`` computes on a float32
stimulus: resize (bilinear, antialiased) and centre crop with torchvision's functions, then
``(x - mean) / std``, the nodes' outputs flattened and concatenated, and the readout. The network
input is the same float32 tensor, bit for bit; the responses differ only by the order in which
the network's and the readout's sums are rounded (``tests/torchkit/test_differentiable.py``
bounds that). On a
``uint8`` stimulus ``encode`` resizes the 8-bit image and rounds it back to 8 bits before scaling
(as the reference toolkit does); that rounding has no gradient, so the module cannot do it. When
no resize happens (the image already has the preset's resize size), the two paths agree to float32
rounding of the same operations.

Readouts: :class:`~berg_core.torchkit.LinearReadout` and :class:`~berg_core.torchkit.MatrixReadout`
are supported here. Any other readout supports it by defining
``differentiable_forward(features) -> tuple[torch.Tensor, ...]``, its responses computed without
in-place operations or ``out=`` arguments: :class:`~berg_core.torchkit.StackedReadout` (one PCA
and regression per repetition, used by berg-things-eeg2) does, and so may a family's own class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from berg_core.errors import InvalidParameterError, NotDifferentiableError, describe_value

if TYPE_CHECKING:
    from berg_core.torchkit.model import FeatureReadoutModel

__all__ = ["DifferentiableEncoder", "differentiable_readout", "differentiable_transform"]

Readout = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
Transform = Callable[[torch.Tensor], torch.Tensor]


def _linear_readout(readout: Any) -> Readout:
    """Scaler -> PCA -> regressions of a :class:`LinearReadout`, out of place."""

    def forward(features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        centred = (features - readout.scaler_mean) / readout.scaler_scale - readout.pca_mean
        z = centred @ readout.components.T
        return tuple(torch.addmm(b, z, coef.T) for coef, b in readout.heads.values())

    return forward


def _matrix_readout(readout: Any) -> Readout:
    """``X @ weight + bias`` per head of a :class:`MatrixReadout`."""

    def forward(features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.addmm(bias, features, weight) for weight, bias in readout.heads.values())

    return forward


def differentiable_readout(readout: Any, model_id: str = "the model") -> Readout:
    """The out-of-place function ``features (B, D) -> one (B, n) tensor per head`` of *readout*.

    Parameters
    ----------
    readout : LinearReadout, MatrixReadout or any object with ``differentiable_forward``
        The readout of a :class:`~berg_core.torchkit.FeatureReadoutModel`.
    model_id : str
        For the error message.

    Returns
    -------
    callable

    Raises
    ------
    NotDifferentiableError
        A readout of another class without ``differentiable_forward``.
    """
    from berg_core.torchkit.readout import LinearReadout, MatrixReadout

    custom = getattr(readout, "differentiable_forward", None)
    if callable(custom):
        return custom
    if isinstance(readout, LinearReadout):
        return _linear_readout(readout)
    if isinstance(readout, MatrixReadout):
        return _matrix_readout(readout)
    raise NotDifferentiableError(
        f"model {model_id} has no differentiable path: its readout {type(readout).__name__} "
        f"defines no differentiable_forward(features); supported are LinearReadout, "
        f"MatrixReadout and readouts with that method"
    )


def differentiable_transform(preprocessor: Any) -> Transform:
    """A :class:`~berg_core.torchkit.Preprocessor`'s preprocessing of float images, out of place.

    For a torchvision preset (or :class:`~berg_core.torchkit.ImageTransform`): torchvision's
    ``resize`` and ``center_crop``, then ``(x - mean) / std`` - the float32 operations the
    preprocessor runs on a float32 batch. Another transform is called as it is, and must itself
    be differentiable torch code.
    """
    if not getattr(preprocessor, "_preset", False):
        transform = preprocessor.transform
        return lambda images: transform(images).float()
    from torchvision.transforms import functional as tvf

    resize_size = list(preprocessor.resize_size)
    crop_size = list(preprocessor.crop_size)
    interpolation, antialias = preprocessor.interpolation, preprocessor.antialias
    mean, std = preprocessor.mean, preprocessor.std

    def transform(images: torch.Tensor) -> torch.Tensor:
        resized = tvf.resize(images, resize_size, interpolation=interpolation, antialias=antialias)
        return (tvf.center_crop(resized, crop_size) - mean) / std

    return transform


class DifferentiableEncoder(nn.Module):
    """A model's preprocessing -> backbone nodes -> readout -> selection, differentiable.

    Build it with ``model.differentiable()`` (or :meth:`from_model`). Its parameters are the
    model's own (shared, not copied), frozen (``requires_grad=False``) and in evaluation mode;
    the module is for differentiating with respect to the images. Closing the model makes it
    unusable.

    Parameters
    ----------
    model_id : str
        For messages.
    transform : callable
        Float ``(B, 3, H, W)`` images in [0, 1] -> the backbone's input.
    network : torch.nn.Module
        The feature-extraction network: input -> dict of node outputs.
    nodes : sequence of str
        The nodes whose outputs, flattened and concatenated in this order, are the features.
    readout : callable
        Features ``(B, D)`` -> one ``(B, n)`` tensor per output.
    shapes : sequence of tuple of int
        Shape after the image axis of each readout output (``output_shapes()``).
    positions : sequence of tuple of (numpy.ndarray or None)
        Per output, per dim, the positions the core's dim picks keep (``None``: all).
    device : torch.device
        Where the model computes; input images are moved there.
    names : sequence of str
        The outputs' names, in order.
    """

    def __init__(
        self,
        *,
        model_id: str,
        transform: Transform,
        network: nn.Module,
        nodes: Sequence[str],
        readout: Readout,
        shapes: Sequence[tuple[int, ...]],
        positions: Sequence[tuple[np.ndarray | None, ...]],
        device: torch.device,
        names: Sequence[str],
    ) -> None:
        super().__init__()
        self.model_id = model_id
        self.transform = transform
        self.network = network
        self.nodes = tuple(nodes)
        self.readout = readout
        self.shapes = tuple(tuple(int(n) for n in shape) for shape in shapes)
        self.names = tuple(names)
        self.device = device
        self._picks = [
            tuple(
                None if index is None else torch.as_tensor(index, dtype=torch.long, device=device)
                for index in kept
            )
            for kept in positions
        ]
        self.eval()

    @classmethod
    def from_model(cls, model: FeatureReadoutModel) -> DifferentiableEncoder:
        """The differentiable path of a :class:`~berg_core.torchkit.FeatureReadoutModel`.

        Raises
        ------
        InvalidParameterError
            The model was closed.
        NotDifferentiableError
            Its readout has no out-of-place form (:func:`differentiable_readout`).
        """
        model._check_open()
        network = model.extractor.module
        if network is None:  # pragma: no cover - released only by close()
            raise InvalidParameterError(f"model {model.model_id} was closed; load it again")
        positions = model._positions()
        return cls(
            model_id=model.model_id,
            transform=differentiable_transform(model.preprocessor),
            network=network,
            nodes=model.extractor.nodes,
            readout=differentiable_readout(model.readout, model.model_id),
            shapes=model.output_shapes(),
            positions=[positions[name] for name in model.output_names],
            device=model.device,
            names=model.output_names,
        )

    def train(self, mode: bool = True) -> DifferentiableEncoder:
        """Stay in evaluation mode (dropout off, as in ``encode``) whatever *mode* says."""
        return super().train(False)

    def check_images(self, images: Any) -> torch.Tensor:
        """*images* as a float tensor on the model's device, after checking its form.

        Raises
        ------
        InvalidParameterError
            Not a floating-point ``torch.Tensor`` of shape ``(B, 3, H, W)`` with ``B >= 1``.
        """
        if not isinstance(images, torch.Tensor):
            raise InvalidParameterError(
                f"images={describe_value(images)}: expected a torch.Tensor (B, 3, H, W) with "
                f"values in [0, 1]"
            )
        if not images.is_floating_point():
            raise InvalidParameterError(
                f"images of dtype {images.dtype}: expected floating-point values in [0, 1] "
                f"(divide 8-bit images by 255)"
            )
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise InvalidParameterError(
                f"images of shape {tuple(images.shape)}: expected (B, 3, H, W) with B >= 1"
            )
        return images.to(self.device, torch.float32)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, D)``: the nodes' outputs for *images*, flattened and concatenated."""
        outputs = self.network(self.transform(self.check_images(images)))
        return torch.cat([torch.flatten(outputs[name], 1) for name in self.nodes], dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's responses to *images*, as ``encode`` returns them.

        Parameters
        ----------
        images : torch.Tensor
            ``(B, 3, H, W)`` floating-point, values in [0, 1].

        Returns
        -------
        tuple of torch.Tensor
            One float32 tensor ``(B, *shape)`` per output (``model.shapes()``).
        """
        heads = self.readout(self.features(images))
        result = []
        for values, shape, kept in zip(heads, self.shapes, self._picks, strict=True):
            values = values.reshape(values.shape[0], *shape)
            for axis, index in enumerate(kept, start=1):
                if index is not None:
                    values = values.index_select(axis, index)
            result.append(values)
        return tuple(result)
