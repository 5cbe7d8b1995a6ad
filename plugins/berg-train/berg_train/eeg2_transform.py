"""The image transform the reference used to TRAIN its THINGS EEG2 ViT-B/32 model.

The reference's training script (more-families.md §2.6) preprocessed each training image with
PIL: centre-crop to the shorter side (a square), ``Resize((224, 224))`` (bilinear), ``ToTensor``
and ImageNet normalisation - not the weights' own preset used at inference (resize the shorter
side to 256, centre-crop 224). The AlexNet models were trained with the AlexNet preset, the same
as at inference. :func:`eeg2_backbone` gives the backbone of each published model with the
transform of its training.

Nothing here imports torch at module level.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from berg_core import InvalidParameterError
from berg_train.backbones import Backbone, resolve_backbone

__all__ = ["EEG2_MODELS", "VIT_TRANSFORMS", "SquareCropResize", "eeg2_backbone"]

#: The THINGS EEG2 model folders berg-train trains (``model-<name>``).
EEG2_MODELS = ("vit_b_32", "alexnet", "alexnet_untrained")
#: ``training``: the reference's training transform (default); ``inference``: the weights' preset.
VIT_TRANSFORMS = ("training", "inference")

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SquareCropResize:
    """Centre-crop a uint8 image tensor to its shorter side, resize to ``size`` x ``size``
    (bilinear, antialiased, rounded back to uint8 as PIL does), scale to [0, 1], normalise.

    Parameters
    ----------
    size : int
        Output side (224).
    """

    def __init__(self, size: int = 224) -> None:
        self.size = int(size)

    def __call__(self, image: Any) -> Any:
        """``(B, 3, H, W)`` uint8 (or float in [0, 1]) tensor -> ``(B, 3, size, size)`` float32."""
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tvf

        side = min(int(image.shape[-2]), int(image.shape[-1]))
        square = tvf.center_crop(image, [side, side])
        resized = tvf.resize(
            square,
            [self.size, self.size],
            interpolation=InterpolationMode.BILINEAR,
            antialias=True,
        )
        x = resized.float() / 255.0 if resized.dtype == torch.uint8 else resized.float()
        mean = torch.tensor(_MEAN, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        std = torch.tensor(_STD, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"SquareCropResize(size={self.size})"


def eeg2_backbone(model: str, vit_transform: str = "training") -> Backbone:
    """The backbone of a THINGS EEG2 model, with the transform it was trained with.

    Parameters
    ----------
    model : str
        ``"vit_b_32"``, ``"alexnet"`` or ``"alexnet_untrained"``.
    vit_transform : str
        For ``vit_b_32``: ``"training"`` (the reference's training transform,
        :class:`SquareCropResize`) or ``"inference"`` (the weights' preset, as berg-things-eeg2
        encodes). Ignored for the AlexNet models (trained with their preset).

    Returns
    -------
    Backbone

    Raises
    ------
    berg_core.InvalidParameterError
        Unknown *model* or *vit_transform*.
    """
    if model not in EEG2_MODELS:
        raise InvalidParameterError(
            f"model {model!r} is not a THINGS EEG2 model; expected one of {', '.join(EEG2_MODELS)}"
        )
    if vit_transform not in VIT_TRANSFORMS:
        raise InvalidParameterError(
            f"vit_transform {vit_transform!r}; expected one of {', '.join(VIT_TRANSFORMS)}"
        )
    backbone = resolve_backbone(model)
    if model != "vit_b_32" or vit_transform == "inference":
        return backbone
    return replace(
        backbone,
        transform=SquareCropResize,
        identity=backbone.identity + "|transform=square-crop-resize-224",
    )
