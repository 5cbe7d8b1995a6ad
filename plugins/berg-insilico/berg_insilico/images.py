"""Image collections for berg-insilico: :mod:`berg_core.sources` under this plugin's names.

An HDF5 dataset such as NSD's ``imgBrick`` ``(73000, 425, 425, 3)`` ``uint8`` is read one block
at a time (channel-last datasets and arrays are transposed per block), so memory holds one block
whatever the collection's size. Everything is read and checked by the core
(:func:`berg_core.sources.open_source`), as ``berg encode`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from berg_core.sources import ImageSource, open_source

__all__ = ["ImageCollection", "images_at", "open_images"]

#: The collection type this plugin streams: the core's :class:`~berg_core.sources.ImageSource`.
ImageCollection = ImageSource


def open_images(images: Any, *, dataset: str | None = None) -> ImageSource:
    """Wrap *images* as an :class:`~berg_core.sources.ImageSource` named ``images`` in errors.

    Parameters
    ----------
    images : array, str, os.PathLike, list of paths, iterable, ImageSource
        See :func:`berg_core.sources.open_source`: an array ``(N, 3, H, W)`` or ``(N, H, W, 3)``,
        an HDF5 file with *dataset* or ``"file.h5:imgBrick"``, a ``.npy`` file, a folder, image
        files, or a one-pass iterable (ranked, but not shown in figures).
    dataset : str, optional
        The dataset inside an HDF5 file.

    Returns
    -------
    ImageSource

    Raises
    ------
    InvalidParameterError
        For an HDF5 file without a dataset name, or a dataset that is not there.
    StimulusError
        For anything else that is not images.
    """
    return open_source(images, dataset, name="images")


def images_at(images: ImageSource, indices: Iterable[int]) -> list[np.ndarray]:
    """The images at *indices* as ``(3, H, W)`` arrays, for figures.

    Raises
    ------
    InvalidParameterError
        For a one-pass iterable, which cannot be read again, or an index out of range.
    """
    picked = [int(i) for i in indices]
    return list(images.take(picked).batch(0, len(picked)))
