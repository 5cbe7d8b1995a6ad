"""Backbones for FactorTopy: the ``get_tokens`` contract, and adapters for torchvision networks.

The contract
------------
A backbone is any object (normally a :class:`torch.nn.Module`) with a method::

    get_tokens(x) -> (local_tokens, global_tokens)

where ``x`` is a preprocessed ``(B, 3, h, w)`` float32 batch, ``local_tokens`` maps layer name to
a ``(B, C, H, W)`` feature map and ``global_tokens`` maps the same layer names, in the same order,
to ``(B, C')`` vectors. Every call returns the same names and shapes. FactorTopy lets each brain
vertex pick a mixture of these layers, a location in the layer's map, and a mix of the local
token there and the layer's global token.

A backbone may carry its preprocessing as an attribute ``transform``: a torchvision weights
preset (``weights.transforms()``), an :class:`ImageTransform`, or any callable taking a ``uint8``
or ``float32`` ``(B, 3, H, W)`` tensor. Without one, :class:`ImageTransform` ``(224)`` is used
(resize, centre crop, ImageNet normalisation).

Writing one for your own network takes a few lines, for example a ResNet-50 whose four stages
are the layers and whose pooled stage outputs are the global tokens::

    import torch, torchvision

    class ResNetTokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
            self.net = torchvision.models.resnet50(weights=weights).eval()
            self.transform = weights.transforms()

        def get_tokens(self, x):
            n = self.net
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            local, global_ = {}, {}
            for name in ("layer1", "layer2", "layer3", "layer4"):
                x = getattr(n, name)(x)
                local[name], global_[name] = x, x.mean(dim=(2, 3))
            return local, global_

Train with it by naming its import path, ``backbone="mypkg.mymod:ResNetTokens"`` (on the command
line ``--backbone mypkg.mymod:ResNetTokens``); the checkpoint records the path, and loading the
trained encoder imports and builds it again.

Built-in backbones (names for ``backbone``): ``vit_b_16`` and ``vit_b_32`` (torchvision ViTs with
ImageNet weights; the 12 encoder blocks are the layers, the class token is the global token, the
patch tokens reshaped to their grid are the local tokens), ``alexnet_untrained`` (berg-nsd's seeded
untrained AlexNet) and ``alexnet`` (ImageNet weights); for the AlexNets the layers are berg-nsd's
feature nodes: conv stages are local maps with their spatial mean as global token, and the fully
connected layers are both global tokens and 1 x 1 local maps. Each built-in accepts
``pretrained=False`` (seeded random weights), which needs no download.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.torchkit import build_seeded, load_pretrained

__all__ = [
    "BUILTIN_BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AlexNetTokens",
    "ImageTransform",
    "TokenBackbone",
    "Tokens",
    "ViTTokens",
    "build_backbone",
    "check_tokens",
    "transform_of",
    "whole_image_transform",
]

#: ImageNet channel means and standard deviations (torchvision's presets).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Seed of the CPU generator for built-in backbones built with ``pretrained=False``.
RANDOM_SEED = 0

#: ``(local_tokens, global_tokens)`` as returned by ``get_tokens``.
Tokens = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


class TokenBackbone(Protocol):
    """What FactorTopy needs of a backbone (see the module docstring)."""

    def get_tokens(self, x: torch.Tensor) -> Tokens:
        """Local ``(B, C, H, W)`` and global ``(B, C)`` tokens of each layer, by layer name."""
        ...


@dataclass
class ImageTransform:
    """Resize the shorter side and centre-crop a square (or resize the whole image to the
    square), scale to [0, 1] and normalise.

    It has the attributes of torchvision's ``ImageClassification`` presets, so
    :class:`berg_core.torchkit.Preprocessor` runs it on its fast path.

    Parameters
    ----------
    size : int
        Side of the output square.
    resize : int, optional
        Shorter side after resizing (default: *size*, i.e. no crop for square images).
    mean, std : sequence of float
        Per-channel normalisation (default: ImageNet's).
    whole : bool
        Resize the whole image to ``size x size`` (other aspect ratios are stretched) instead of
        resizing the shorter side and cropping the centre; *resize* is then unused.
    """

    size: int = 224
    resize: int | None = None
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    interpolation: InterpolationMode = field(default=InterpolationMode.BILINEAR)
    antialias: bool = True
    whole: bool = False

    @property
    def resize_size(self) -> list[int]:
        """Shorter side after resizing, as torchvision's presets store it (``[size, size]``:
        the whole image to the square)."""
        return [self.size, self.size] if self.whole else [self.resize or self.size]

    @property
    def crop_size(self) -> list[int]:
        """Side of the centre crop, as torchvision's presets store it."""
        return [self.size]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Transform a ``uint8`` or ``float32`` ``(B, 3, H, W)`` tensor (a generic path)."""
        x = tvf.resize(
            images, self.resize_size, interpolation=self.interpolation, antialias=self.antialias
        )
        x = tvf.convert_image_dtype(tvf.center_crop(x, self.crop_size), torch.float32)
        return tvf.normalize(x, list(self.mean), list(self.std))


def transform_of(backbone: Any, *, whole_image: bool = False) -> Callable[[torch.Tensor], Any]:
    """The backbone's preprocessing: its ``transform`` attribute, or :class:`ImageTransform` (224).

    Parameters
    ----------
    backbone : object
    whole_image : bool
        Resize the whole image to the transform's input size instead of cropping its centre
        (:func:`whole_image_transform`): FactorTopy's locations then cover the whole image.
    """
    transform = getattr(backbone, "transform", None)
    transform = transform if transform is not None else ImageTransform(224)
    return whole_image_transform(transform) if whole_image else transform


def whole_image_transform(transform: Any) -> Any:
    """*transform* resizing the whole image to its input size, without the centre crop.

    A torchvision ``ImageClassification`` preset or an :class:`ImageTransform` (anything with
    ``crop_size``, ``mean``, ``std``, ``interpolation`` and ``antialias``) becomes an
    :class:`ImageTransform` with ``whole=True`` of the preset's crop size, normalisation and
    interpolation. Any other callable is returned as it is: it decides its own geometry.
    """
    steps = ("crop_size", "mean", "std", "interpolation", "antialias")
    if not all(hasattr(transform, name) for name in steps):
        return transform
    return ImageTransform(
        size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        interpolation=transform.interpolation,
        antialias=bool(transform.antialias),
        whole=True,
    )


def check_tokens(tokens: Any, where: str = "get_tokens") -> Tokens:
    """Check the output of ``get_tokens`` and return it.

    Raises
    ------
    InvalidParameterError
        If it is not two dicts with the same keys of ``(B, C, H, W)`` and ``(B, C)`` tensors with
        one batch size.
    """
    if not (isinstance(tokens, tuple) and len(tokens) == 2):
        raise InvalidParameterError(f"{where} must return (local_tokens, global_tokens)")
    local, global_ = tokens
    if not (isinstance(local, Mapping) and isinstance(global_, Mapping)):
        raise InvalidParameterError(f"{where} must return two dicts of layer name -> tensor")
    if list(local) != list(global_) or not local:
        raise InvalidParameterError(
            f"{where}: local and global tokens must name the same layers in the same order, got "
            f"{list(local)} and {list(global_)}"
        )
    batch = None
    for name in local:
        lt, gt = local[name], global_[name]
        if not (isinstance(lt, torch.Tensor) and lt.ndim == 4):
            raise InvalidParameterError(
                f"{where}: local token of layer {name!r} must be a (B, C, H, W) tensor, got "
                f"{getattr(lt, 'shape', type(lt).__name__)}"
            )
        if not (isinstance(gt, torch.Tensor) and gt.ndim == 2):
            raise InvalidParameterError(
                f"{where}: global token of layer {name!r} must be a (B, C) tensor, got "
                f"{getattr(gt, 'shape', type(gt).__name__)}"
            )
        if batch is None:
            batch = lt.shape[0]
        if lt.shape[0] != batch or gt.shape[0] != batch:
            raise InvalidParameterError(f"{where}: layer {name!r} has another batch size")
    return dict(local), dict(global_)


class ViTTokens(nn.Module):
    """Tokens of a torchvision :class:`~torchvision.models.VisionTransformer`, block by block.

    For each encoder block ``encoder_layer_i``: the class token is the global token ``(B, D)``,
    the patch tokens reshaped to their ``(D, image_size / patch_size, ...)`` grid are the local
    tokens. The outputs are those of the blocks themselves (before the final layer norm), the
    nodes berg-nsd's ViT-B/32 model reads.

    Parameters
    ----------
    vit : torchvision.models.VisionTransformer
    transform : callable, optional
        Its preprocessing (default: :class:`ImageTransform` at ``vit.image_size``).
    """

    def __init__(self, vit: torchvision.models.VisionTransformer, transform: Any = None) -> None:
        super().__init__()
        self.vit = vit.eval()
        self.transform = transform if transform is not None else ImageTransform(vit.image_size)
        self.layer_names = tuple(f"encoder_layer_{i}" for i in range(len(vit.encoder.layers)))

    def get_tokens(self, x: torch.Tensor) -> Tokens:
        """Local and global tokens of every encoder block."""
        vit = self.vit
        tokens = vit._process_input(x)  # (B, patches, D): the patch embedding
        batch, _, dim = tokens.shape
        side = vit.image_size // vit.patch_size
        tokens = torch.cat([vit.class_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = vit.encoder.dropout(tokens + vit.encoder.pos_embedding)
        local, global_ = {}, {}
        for name, block in zip(self.layer_names, vit.encoder.layers, strict=True):
            tokens = block(tokens)
            global_[name] = tokens[:, 0]
            local[name] = tokens[:, 1:].transpose(1, 2).reshape(batch, dim, side, side)
        return local, global_


class AlexNetTokens(nn.Module):
    """Tokens of a torchvision AlexNet at berg-nsd's feature nodes.

    Convolutional nodes (``features.*``) give local maps and their spatial means as global tokens;
    fully connected nodes (``classifier.*``) give global tokens and the same vectors as ``1 x 1``
    local maps.

    Parameters
    ----------
    alexnet : torchvision.models.AlexNet
    nodes : sequence of str, optional
        ``features.<i>`` / ``classifier.<i>`` module outputs (default: berg-nsd's
        ``ALEXNET_NODES``).
    transform : callable, optional
        Its preprocessing (default: the ImageNet weights' preset).
    """

    def __init__(
        self,
        alexnet: torchvision.models.AlexNet,
        nodes: Sequence[str] | None = None,
        transform: Any = None,
    ) -> None:
        super().__init__()
        from berg_nsd.cards import ALEXNET_NODES

        self.alexnet = alexnet.eval()
        self.nodes = tuple(nodes or ALEXNET_NODES)
        known = {f"features.{i}" for i in range(len(alexnet.features))}
        known |= {f"classifier.{i}" for i in range(len(alexnet.classifier))}
        unknown = [node for node in self.nodes if node not in known]
        if unknown:
            raise InvalidParameterError(f"AlexNet has no node(s) {', '.join(unknown)}")
        if transform is None:
            transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
        self.transform = transform

    def get_tokens(self, x: torch.Tensor) -> Tokens:
        """Local and global tokens of every node, in network order."""
        net = self.alexnet
        found: dict[str, torch.Tensor] = {}
        for i, module in enumerate(net.features):
            x = module(x)
            found[f"features.{i}"] = x
        x = torch.flatten(net.avgpool(x), 1)
        for i, module in enumerate(net.classifier):
            x = module(x)
            found[f"classifier.{i}"] = x
        local, global_ = {}, {}
        for node in self.nodes:
            value = found[node]
            if value.ndim == 4:
                local[node], global_[node] = value, value.mean(dim=(2, 3))
            else:
                local[node], global_[node] = value[:, :, None, None], value
        return local, global_


def _vit(builder: Callable[..., nn.Module], weights: Any, pretrained: bool) -> ViTTokens:
    if pretrained:
        return ViTTokens(load_pretrained(builder, weights), weights.transforms())
    return ViTTokens(build_seeded(builder, RANDOM_SEED, weights=None), weights.transforms())


def vit_b_16(pretrained: bool = True) -> ViTTokens:
    """torchvision ViT-B/16 (ImageNet ``IMAGENET1K_V1`` weights, or seeded random ones)."""
    models = torchvision.models
    return _vit(models.vit_b_16, models.ViT_B_16_Weights.IMAGENET1K_V1, pretrained)


def vit_b_32(pretrained: bool = True) -> ViTTokens:
    """torchvision ViT-B/32 (ImageNet ``IMAGENET1K_V1`` weights, or seeded random ones)."""
    models = torchvision.models
    return _vit(models.vit_b_32, models.ViT_B_32_Weights.IMAGENET1K_V1, pretrained)


def alexnet(pretrained: bool = True) -> AlexNetTokens:
    """torchvision AlexNet with ImageNet weights (berg-nsd's ``alexnet`` backbone)."""
    if not pretrained:
        return alexnet_untrained()
    from berg_nsd.cards import SPECS
    from berg_nsd.model import build_backbone as nsd_backbone

    return AlexNetTokens(nsd_backbone(SPECS["fmri-nsd_fsaverage-alexnet"]))


def alexnet_untrained() -> AlexNetTokens:
    """berg-nsd's untrained AlexNet, seeded exactly as the reference toolkit seeds it."""
    from berg_nsd.cards import SPECS
    from berg_nsd.model import build_backbone as nsd_backbone

    return AlexNetTokens(nsd_backbone(SPECS["fmri-nsd_fsaverage-alexnet_untrained"]))


#: Built-in backbone names and their builders.
BUILTIN_BACKBONES: dict[str, Callable[..., Any]] = {
    "vit_b_16": vit_b_16,
    "vit_b_32": vit_b_32,
    "alexnet": alexnet,
    "alexnet_untrained": alexnet_untrained,
}


def build_backbone(name: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Build a backbone from a built-in name or an import path ``"package.module:factory"``.

    Parameters
    ----------
    name : str
        A key of :data:`BUILTIN_BACKBONES`, or the import path of a callable (a class or
        function) returning an object with ``get_tokens``.
    kwargs : mapping, optional
        Keyword arguments of the builder (JSON values: they are stored in checkpoints).

    Returns
    -------
    object
        The backbone, in eval mode when it is a module.

    Raises
    ------
    InvalidParameterError
        Unknown name, or the result has no ``get_tokens``.
    ModelLoadError
        The import path cannot be imported, or pretrained weights are missing.
    """
    from berg_core.errors import PluginError
    from berg_core.registry import resolve_import_path

    kwargs = dict(kwargs or {})
    if name in BUILTIN_BACKBONES:
        builder = BUILTIN_BACKBONES[name]
    elif ":" in name:
        try:
            builder = resolve_import_path(name, f"backbone {name!r}")
        except PluginError as exc:
            raise ModelLoadError(str(exc)) from None
    else:
        raise InvalidParameterError(
            f"backbone {name!r} is neither a built-in ({', '.join(BUILTIN_BACKBONES)}) nor an "
            f"import path 'package.module:factory'"
        )
    try:
        backbone = builder(**kwargs)
    except TypeError as exc:
        raise InvalidParameterError(f"backbone {name!r} with arguments {kwargs}: {exc}") from None
    if not callable(getattr(backbone, "get_tokens", None)):
        raise InvalidParameterError(
            f"backbone {name!r} built a {type(backbone).__name__}, which has no get_tokens(x) "
            f"method (see berg_factortopy.backbones for the contract)"
        )
    if isinstance(backbone, nn.Module):
        backbone.eval()
    return backbone
