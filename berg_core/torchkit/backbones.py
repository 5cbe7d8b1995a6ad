"""Building torchvision backbones: seeded untrained networks and pretrained ones from the cache.

Both builders leave the caller's random number generators exactly as they found them, and the
pretrained builder never downloads silently into an unexpected place: it uses torchvision's own
cache (``$TORCH_HOME/hub/checkpoints``) and, when the file is missing and cannot be downloaded,
raises :class:`~berg_core.errors.ModelLoadError` naming the file and where to put it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from berg_core.errors import ModelLoadError, PluginError

__all__ = [
    "SharedBackbone",
    "build_seeded",
    "checkpoint_path",
    "load_pretrained",
    "shared_backbone",
]


@dataclass(frozen=True)
class SharedBackbone:
    """The recipe of a backbone that models of the same spec share within a process.

    Give it to :func:`~berg_core.torchkit.build_readout_model` (or
    :class:`~berg_core.torchkit.NodeFeatureExtractor`) instead of a built network: the first
    model calls *build*; later ones with the same *key*, nodes, device and memory format reuse
    that network (frozen, in eval mode) while any of them is open. Closing them all frees it.

    Parameters
    ----------
    key : hashable
        Says which network *build* returns: equal keys must mean equal weights. Use
        :func:`shared_backbone` for torchvision networks, which derives it.
    build : callable
        Returns the network on the CPU.
    """

    key: Hashable
    build: Callable[[], nn.Module]


def shared_backbone(
    builder: Callable[..., nn.Module], *, weights: Any = None, seed: int | None = None
) -> SharedBackbone:
    """A torchvision network, pretrained (*weights*) or seeded, shared between models.

    The key is the builder and the seed, or the builder, the weights and the cached file's path,
    size and modification time (a replaced file is read again).

    Parameters
    ----------
    builder : callable
        A torchvision model builder, e.g. ``torchvision.models.alexnet``.
    weights : torchvision Weights member, optional
        Pretrained weights (:func:`load_pretrained`).
    seed : int, optional
        Without *weights*: the seed of the initial weights (:func:`build_seeded`).

    Returns
    -------
    SharedBackbone
    """
    name = f"{builder.__module__}.{builder.__qualname__}"
    if (weights is None) == (seed is None):
        raise PluginError(
            f"shared_backbone({builder.__name__}): give weights= (pretrained) or seed= "
            f"(untrained), exactly one; got weights={weights!r}, seed={seed!r}"
        )
    if weights is None:
        return SharedBackbone(
            ("seeded", name, int(seed)),  # type: ignore[arg-type]
            lambda: build_seeded(builder, int(seed), weights=None),  # type: ignore[arg-type]
        )
    path = checkpoint_path(weights)
    try:
        stat = path.stat()
        version: tuple[Any, ...] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        version = ("missing",)
    return SharedBackbone(
        ("pretrained", name, str(weights), str(path), version),
        lambda: load_pretrained(builder, weights),
    )


def build_seeded(builder: Callable[..., nn.Module], seed: int, **kwargs: Any) -> nn.Module:
    """Build ``builder(**kwargs)`` right after seeding torch's CPU generator with *seed*.

    Nothing is drawn from the generator between seeding and the call, so the network's initial
    weights are those of::

        torch.manual_seed(seed)
        model = builder(**kwargs)

    in a fresh process (e.g. ``torchvision.models.alexnet(weights=None)`` with seed 20200220, as
    the reference toolkit builds its untrained AlexNet). Unlike that snippet, the caller's CPU
    random state is restored afterwards and CUDA generators are never touched.

    Parameters
    ----------
    builder : callable
        Returns an :class:`torch.nn.Module` built on the CPU.
    seed : int
        Seed for the CPU default generator.
    **kwargs
        Passed to *builder*.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = builder(**kwargs)
    return model.eval()


def checkpoint_path(weights: Any) -> Path:
    """Where torchvision's cache keeps the file of *weights* (a torchvision ``Weights`` member).

    That is ``$TORCH_HOME/hub/checkpoints/<file name of weights.url>`` (``TORCH_HOME`` defaults to
    ``~/.cache/torch``), e.g. ``.../hub/checkpoints/alexnet-owt-7be5be79.pth``.
    """
    name = os.path.basename(str(weights.url).split("?", 1)[0])
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_pretrained(builder: Callable[..., nn.Module], weights: Any) -> nn.Module:
    """Build ``builder(weights=weights)`` from torchvision's cache, downloading only if missing.

    Parameters
    ----------
    builder : callable
        A torchvision model builder, e.g. ``torchvision.models.alexnet``.
    weights : torchvision Weights member
        e.g. ``torchvision.models.AlexNet_Weights.IMAGENET1K_V1``.

    Returns
    -------
    torch.nn.Module
        The model on the CPU, in eval mode. The caller's random state is left unchanged (the
        builder initialises layers randomly before loading the weights).

    Raises
    ------
    ModelLoadError
        If the file is missing and cannot be downloaded (no network), or is unreadable; the
        message names the file, the URL it comes from and the folder to put it in.
    """
    path = checkpoint_path(weights)
    existed = path.is_file()
    try:
        with torch.random.fork_rng(devices=[]):
            model = builder(weights=weights, progress=False)
    except Exception as exc:
        where = (
            f"Put the file {path.name} (from {weights.url}) at {path} "
            f"($TORCH_HOME/hub/checkpoints/{path.name}; TORCH_HOME is "
            f"{os.environ.get('TORCH_HOME', 'unset, so ~/.cache/torch')})."
        )
        if existed:
            raise ModelLoadError(
                f"could not load the pretrained weights {weights} of {builder.__name__} from "
                f"{path}: {type(exc).__name__}: {exc}. The file may be corrupt or not a "
                f"state dict of this network: delete it and download it again. {where}"
            ) from None
        raise ModelLoadError(
            f"the pretrained weights {weights} of {builder.__name__} are not in torchvision's "
            f"cache and could not be downloaded ({type(exc).__name__}: {exc}). {where}"
        ) from None
    return model.eval()
