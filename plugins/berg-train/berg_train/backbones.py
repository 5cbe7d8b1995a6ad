"""Backbones the training engine extracts image features from.

The built-in names are the backbones of the published models, taken from their plugins so there
is one definition of each: ``alexnet_untrained``, ``alexnet`` and ``vit_b_32`` from berg-nsd's
:data:`berg_nsd.cards.SPECS` (built by :func:`berg_nsd.model.build_backbone`), whose nodes are
the reference's (:mod:`berg_core.reference`, shared with berg-things). Features are the
flattened, concatenated outputs of the spec's nodes, after the weights' own preprocessing -
exactly what the plugins compute at inference, so trained readouts load and run unchanged.

A user's own network is a :class:`Backbone` (or a ``torch.nn.Module`` whose output is the
feature vector), given directly in Python or, on the command line, as an import path
``package.module:attribute`` naming one or a function returning one.

Nothing here imports torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_BACKBONES", "Backbone", "imagenet_transform", "resolve_backbone"]

#: Built-in backbone names and the berg-nsd model id whose spec defines them.
BUILTIN_BACKBONES = {
    "alexnet_untrained": "fmri-nsd_fsaverage-alexnet_untrained",
    "alexnet": "fmri-nsd_fsaverage-alexnet",
    "vit_b_32": "fmri-nsd_fsaverage-vit_b_32",
}


def imagenet_transform(crop_size: int = 224, resize_size: int = 256) -> Any:
    """torchvision's ImageNet preset: resize the short side, centre-crop, scale, normalise."""
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=crop_size, resize_size=resize_size)


@dataclass(frozen=True)
class Backbone:
    """A network and which of its outputs are the image features.

    Parameters
    ----------
    name : str
        Short name, used for the model folder (``model-<name>``) and the feature cache.
    build : callable
        ``build() -> torch.nn.Module`` on the CPU. Called once per extraction.
    nodes : tuple of str or None
        Node names for :class:`berg_core.torchkit.NodeFeatureExtractor` (their outputs are
        flattened and concatenated), or ``None`` to use the module's output, flattened.
    transform : callable
        ``transform() -> preprocessing``: returns the callable applied to each uint8 image batch
        (for torchvision weights, ``weights.transforms()``; default :func:`imagenet_transform`).
    channels_last : bool
        Run convolutions in channels-last memory format (faster on CPU).
    input_size : int
        Side of the square input after preprocessing.
    identity : str
        Anything that changes the features (weights version, seed ...): part of the cache key.
    """

    name: str
    build: Callable[[], Any]
    nodes: tuple[str, ...] | None = None
    transform: Callable[[], Any] = field(default=imagenet_transform)
    channels_last: bool = False
    input_size: int = 224
    identity: str = ""


def _builtin(name: str) -> Backbone:
    from berg_nsd.cards import SPECS

    spec = SPECS[BUILTIN_BACKBONES[name]]

    def build() -> Any:
        from berg_nsd.model import build_backbone

        return build_backbone(spec)

    def transform() -> Any:
        import torchvision

        enum_name, member = spec.weights.split(".")
        return getattr(getattr(torchvision.models, enum_name), member).transforms()

    nodes = spec.nodes
    identity = f"{spec.builder}|{spec.weights}|pretrained={spec.pretrained}|seed={spec.seed}"
    return Backbone(
        name=name,
        build=build,
        nodes=tuple(nodes),
        transform=transform,
        channels_last=spec.channels_last,
        identity=identity,
    )


def _from_module(module: Any, name: str) -> Backbone:
    return Backbone(name=name, build=lambda: module, nodes=None, identity=f"module:{name}")


def resolve_backbone(backbone: str | Backbone | Any) -> Backbone:
    """Turn a name, an import path, a :class:`Backbone` or a module into a :class:`Backbone`.

    Parameters
    ----------
    backbone : str, Backbone or torch.nn.Module
        ``"alexnet_untrained"``, ``"alexnet"``, ``"vit_b_32"``; ``"package.module:attribute"``
        naming a :class:`Backbone`, a module, or a function returning either; or the object.

    Returns
    -------
    Backbone

    Raises
    ------
    berg_core.InvalidParameterError
        Unknown name, or an import path that does not give a backbone.
    """
    from berg_core import InvalidParameterError

    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, str):
        if backbone in BUILTIN_BACKBONES:
            return _builtin(backbone)
        if ":" not in backbone:
            raise InvalidParameterError(
                f"backbone {backbone!r} is not one of {', '.join(BUILTIN_BACKBONES)}, nor an "
                f"import path 'package.module:attribute'"
            )
        from berg_core.registry import resolve_import_path

        obj = resolve_import_path(backbone, "backbone")
        name = backbone.rsplit(":", 1)[1].split(".")[-1]
        if not isinstance(obj, Backbone) and callable(obj) and not _is_module(obj):
            obj = obj()
        if isinstance(obj, Backbone):
            return obj
        if _is_module(obj):
            return _from_module(obj, name)
        raise InvalidParameterError(
            f"backbone {backbone!r} gave a {type(obj).__name__}; expected a berg_train.Backbone "
            f"or a torch.nn.Module"
        )
    if _is_module(backbone):
        return _from_module(backbone, type(backbone).__name__.lower())
    raise InvalidParameterError(f"backbone {backbone!r} is not a name, import path or module")


def _is_module(obj: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, nn.Module)
