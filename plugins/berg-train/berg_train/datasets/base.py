"""What the training engine needs from a dataset reader."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from berg_train.features import ImageSource

__all__ = [
    "SIMULATED_MARKER",
    "ImageFiles",
    "TargetBlock",
    "TrainingDataset",
    "card_layout",
    "is_simulated",
    "zscore_rows",
]

#: A file of this name at a dataset's root marks it as simulated (written by
#: :mod:`berg_train.simulate`); everything trained on it is labelled SIMULATED.
SIMULATED_MARKER = "SIMULATED_DATA.txt"


class ImageFiles:
    """Image files at given paths, decoded to uint8 ``(3, H, W)`` (an image source).

    :meth:`load` returns a list (images may differ in size; berg-core's preprocessing resizes
    each).

    Parameters
    ----------
    paths : sequence of Path
        The images, in feature-row order.
    label : str
        What the images are, for the error message of a missing one (``"THINGS image"``).
    """

    def __init__(self, paths: Sequence[Path], label: str = "image") -> None:
        self.paths = [Path(path) for path in paths]
        self.label = label

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The images at feature rows *indices*.

        Raises
        ------
        berg_core.InvalidParameterError
            An image file is missing.
        """
        from PIL import Image

        from berg_core import InvalidParameterError

        images = []
        for i in indices:
            path = self.paths[int(i)]
            if not path.is_file():
                raise InvalidParameterError(f"{self.label} not found: {path}")
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy())
        return images


def card_layout(card: Any, subject: int, model: str) -> dict[str, PurePosixPath]:
    """Where a trained model *model* keeps the per-subject files a published *card* declares.

    A card's files lie in its model's folder, ``.../model-<name>/<kind>/<file>``
    (``card.files_for(subject)``); a model trained under the name *model* gets the same files,
    named the same way, in ``.../model-<model>/``. The names are read from the card, never
    repeated here.

    Parameters
    ----------
    card : berg_core.ModelCard
        The published model's card (NSD or THINGS), whose files are all in one model folder.
    subject : int
        The subject.
    model : str
        The trained model's folder name (``model-<model>``).

    Returns
    -------
    dict of str to PurePosixPath
        ``"dir"``: the model's folder relative to ``berg_dir``; and for each card file its kind
        (the sub-folder: ``"encoding_models_weights"``, ``"metadata"``) -> its path relative to
        ``berg_dir``.
    """
    keys = [PurePosixPath(key) for key in card.files_for(subject)]
    folders = {key.parent.parent for key in keys}
    if len(folders) != 1:  # pragma: no cover - a card of this repository's plugins
        raise RuntimeError(f"{card.model_id}: files in several model folders: {sorted(folders)}")
    folder = folders.pop().parent / f"model-{model}"
    layout = {"dir": folder}
    layout.update({key.parent.name: folder / key.parent.name / key.name for key in keys})
    return layout


def is_simulated(root: Path) -> bool:
    """Whether *root* holds a simulated dataset (:data:`SIMULATED_MARKER`)."""
    return (Path(root) / SIMULATED_MARKER).is_file()


def zscore_rows(block: np.ndarray, *, min_std: float = 0.0) -> np.ndarray:
    """z-score each row of ``(c, T)`` *block* over its T values, ignoring NaNs (ddof 0).

    Rows with zero spread give NaN (as ``scipy.stats.zscore(nan_policy='omit')``) unless
    *min_std* > 0 floors the standard deviation. Returns float32 ``(c, T)``.
    """
    x = np.asarray(block, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (
            np.nanmean(x, axis=1, keepdims=True) if np.isnan(x).any() else x.mean(1, keepdims=True)
        )
        x = x - mean
        std = np.sqrt(np.nanmean(x * x, axis=1, keepdims=True))
        if min_std > 0:
            std = np.maximum(std, min_std)
        x /= std
    return x.astype(np.float32)


@dataclass
class TargetBlock:
    """Targets of a chunk of output columns.

    Attributes
    ----------
    train : numpy.ndarray
        ``(n_train, c)`` float32, one row per design row (:attr:`TrainingDataset.train_rows`).
    test : numpy.ndarray
        ``(n_test, c)`` float32, one row per test image (averaged over its repeats).
    """

    train: np.ndarray
    test: np.ndarray


class TrainingDataset(ABC):
    """A subject of a fMRI dataset, read for training.

    Feature rows are :attr:`images` in order; the first :attr:`n_fit` rows are the training
    images the scaler and PCA are fitted on.
    """

    #: ``train_dataset-<dataset_id>`` in the berg_dir layout.
    dataset_id: str
    #: Backbone used when the configuration names none.
    default_backbone: str = "alexnet_untrained"
    subject: int
    root: Path
    simulated: bool
    #: ``(name, size)`` of each output (``("lh", 163842), ("rh", 163842)``).
    outputs: tuple[tuple[str, int], ...]
    images: ImageSource
    n_fit: int
    #: Feature row of each design row of the regression.
    train_rows: np.ndarray
    #: Feature row of each test row.
    test_rows: np.ndarray
    #: Cross-validation group of each design row (e.g. scan session), or ``None``.
    train_groups: np.ndarray | None = None
    #: Trials averaged per test row.
    test_repeats: float = 1.0

    @abstractmethod
    def read_targets(self, output: str, start: int, stop: int) -> TargetBlock:
        """Preprocessed targets of columns ``start:stop`` of *output*."""

    @abstractmethod
    def noise_ceiling(self, output: str) -> np.ndarray:
        """Noise ceiling (fraction) of every column of *output* for the test targets."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies the data (paths, sizes, partitions): hashed for the resume keys."""

    @abstractmethod
    def weights_path(self, berg_dir: Path, model: str) -> Path:
        """Where the weights file goes."""

    @abstractmethod
    def metadata_path(self, berg_dir: Path, model: str) -> Path:
        """Where the metadata file goes."""

    @abstractmethod
    def figure_path(self, berg_dir: Path, model: str) -> Path:
        """Where the accuracy figure goes."""

    @abstractmethod
    def weights_dict(
        self, scaler_param: dict, pca_param: dict, heads: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """The weights dict in the reference layout."""

    @abstractmethod
    def metadata_dict(self, evaluation: dict[str, dict[str, np.ndarray]], info: dict) -> dict:
        """The metadata dict in the reference layout (with the evaluation filled in)."""

    @abstractmethod
    def roi_table(self) -> dict[str, dict[str, np.ndarray]]:
        """``{output: {roi: column indices}}`` for the accuracy figure."""

    def fingerprint(self) -> str:
        """Short hash of :meth:`identity`."""
        text = repr(sorted(self.identity().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def label(self) -> str:
        """``"SIMULATED "`` for simulated data, else ``""``."""
        return "SIMULATED " if self.simulated else ""


def array_digest(*arrays: np.ndarray) -> str:
    """Short hash of arrays' bytes (partitions in resume keys)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
