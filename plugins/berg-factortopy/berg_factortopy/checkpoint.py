"""Reading and writing the torch files of a FactorTopy checkpoint (layout: :mod:`.layout`).

Tensors are saved with :func:`torch.save` as dicts of tensors and plain values, and read back
only with ``torch.load(weights_only=True)``: a checkpoint from elsewhere can hold data, never code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from berg_core import ModelLoadError
from berg_factortopy.config import TrainConfig
from berg_factortopy.layout import WEIGHTS_FILE, read_config
from berg_factortopy.network import FactorTopy

__all__ = ["Checkpoint", "build_network", "load_checkpoint", "load_tensors", "save_atomic"]


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` *obj* to *path* through a temporary file, so *path* is never partial."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        torch.save(obj, partial)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def load_tensors(path: Path) -> dict[str, Any]:
    """Read a dict saved by :func:`save_atomic`, with ``weights_only=True``, onto the CPU.

    Raises
    ------
    ModelLoadError
        Missing file, or anything but tensors and plain values in it.
    """
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"{path} is not a FactorTopy checkpoint file that can be read safely "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise ModelLoadError(f"{path} holds no 'state_dict'")
    return data


def build_network(config: dict[str, Any]) -> FactorTopy:
    """An untrained :class:`FactorTopy` with the architecture a checkpoint config describes."""
    train = TrainConfig.from_dict(config["train"])
    vertices = int(config["n_lh"]) + int(config["n_rh"])
    return FactorTopy(
        config["layers"],
        config["local_channels"],
        config["global_channels"],
        torch.zeros(vertices, 4),
        bottleneck=train.bottleneck,
        hidden=train.hidden,
        n_frequencies=train.n_frequencies,
    )


class Checkpoint:
    """A trained encoder read from a checkpoint folder.

    Attributes
    ----------
    folder : Path
    config : dict
        ``config.json``.
    network : FactorTopy
        On the CPU, with the saved weights, in eval mode.
    vertices : dict of str to numpy.ndarray
        fsaverage indices of the ``lh`` and ``rh`` vertices (the network's rows, left first).
    epoch : int
        The epoch the weights are from (1-based).
    """

    def __init__(
        self,
        folder: Path,
        config: dict[str, Any],
        network: FactorTopy,
        vertices: dict[str, np.ndarray],
        epoch: int,
    ) -> None:
        self.folder = folder
        self.config = config
        self.network = network
        self.vertices = vertices
        self.epoch = epoch

    @property
    def subject(self) -> int:
        """The NSD subject the encoder was trained on."""
        return int(self.config["subject"])

    @property
    def train_config(self) -> TrainConfig:
        """The training settings."""
        return TrainConfig.from_dict(self.config["train"])


def load_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint:
    """Read ``config.json`` and ``model.pt`` of a checkpoint folder.

    Raises
    ------
    ModelLoadError
        A file is missing, unsafe, or does not match the config.
    """
    folder = Path(folder)
    config = read_config(folder)
    path = folder / WEIGHTS_FILE
    data = load_tensors(path)
    try:
        network = build_network(config)
        network.load_state_dict(data["state_dict"])
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"{path} does not fit {folder / 'config.json'} ({type(exc).__name__}: {exc})"
        ) from None
    vertices = {}
    for hemi, size in (("lh", config["n_lh"]), ("rh", config["n_rh"])):
        index = data.get(f"{hemi}_vertices")
        if not isinstance(index, torch.Tensor) or tuple(index.shape) != (int(size),):
            raise ModelLoadError(f"{path}: '{hemi}_vertices' is missing or not ({size},)")
        vertices[hemi] = index.numpy().astype(np.int64)
    return Checkpoint(folder, config, network.eval(), vertices, int(data.get("epoch", 0)))
