"""Image collections read block by block: arrays, folders, file lists, HDF5 datasets, iterables.

An HDF5 dataset such as NSD's ``imgBrick`` ``(73000, 425, 425, 3)`` ``uint8`` is read one block
at a time (channel-last datasets and arrays are transposed per block), so memory holds one block
whatever the collection's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import InvalidParameterError, StimulusError, as_stimulus

__all__ = ["ImageCollection", "open_images"]


def _channels_last(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3


class ImageCollection:
    """Images in order, read in blocks; ``len()`` is ``None`` for a one-pass iterable.

    Use :func:`open_images` to build one.
    """

    def __init__(
        self,
        *,
        array: Any = None,
        stimulus: Any = None,
        iterable: Iterable[Any] | None = None,
        h5: tuple[Path, str] | None = None,
        description: str = "",
    ) -> None:
        self._array = array
        self._stimulus = stimulus
        self._iterable = iterable
        self._h5 = h5
        self.description = description
        if h5 is not None:
            import h5py

            with h5py.File(h5[0], "r") as file:
                self._shape = tuple(file[h5[1]].shape)
        elif array is not None:
            self._shape = tuple(array.shape)
        else:
            self._shape = None

    def __len__(self) -> int:
        n = self.size
        if n is None:
            raise InvalidParameterError(
                f"images={self.description}: a one-pass iterable has no length"
            )
        return n

    @property
    def size(self) -> int | None:
        """The number of images, or ``None`` for a one-pass iterable."""
        if self._shape is not None:
            return int(self._shape[0])
        if self._stimulus is not None:
            return len(self._stimulus)
        return None

    @property
    def rereadable(self) -> bool:
        """Whether images can be read again by index (not a one-pass iterable)."""
        return self._iterable is None

    def _slice(self, start: int, stop: int) -> Any:
        if self._stimulus is not None:
            return self._stimulus.batch(start, stop)
        if self._h5 is not None:
            import h5py

            with h5py.File(self._h5[0], "r") as file:
                block = np.asarray(file[self._h5[1]][start:stop])
        else:
            block = np.asarray(self._array[start:stop])
        if _channels_last(self._shape):
            block = np.ascontiguousarray(block.transpose(0, 3, 1, 2))
        return block

    def blocks(self, block_size: int, start: int = 0) -> Iterator[tuple[int, Any]]:
        """Yield ``(first_index, images)`` blocks of *block_size* images from image *start*.

        ``images`` is a ``(B, 3, H, W)`` array, or a list of ``(3, H, W)`` arrays when sizes
        differ.
        """
        if self._iterable is None:
            n = self.size
            for first in range(start, n, block_size):
                yield first, self._slice(first, min(first + block_size, n))
            return
        pending: list[np.ndarray] = []
        index = 0
        for item in self._iterable:
            item = np.asarray(item)
            parts = [item] if item.ndim == 3 else list(item) if item.ndim == 4 else None
            if parts is None:
                raise StimulusError(
                    f"images: an iterable must yield (3, H, W) images or (B, 3, H, W) batches, "
                    f"got an array of shape {item.shape}"
                )
            for image in parts:
                if _channels_last((1, *image.shape)):
                    image = np.ascontiguousarray(image.transpose(2, 0, 1))
                if index >= start:
                    pending.append(image)
                index += 1
                if len(pending) == block_size:
                    yield index - block_size, _stack(pending)
                    pending = []
        if pending:
            yield index - len(pending), _stack(pending)

    def get(self, indices: Iterable[int]) -> list[np.ndarray]:
        """The images at *indices* as ``(3, H, W)`` arrays (for figures).

        Raises
        ------
        InvalidParameterError
            For a one-pass iterable, which cannot be read again.
        """
        if not self.rereadable:
            raise InvalidParameterError(
                f"images={self.description}: a one-pass iterable cannot be read again for "
                f"figures; give an array, a folder, a list of files or an HDF5 dataset"
            )
        out = []
        for i in indices:
            block = self._slice(int(i), int(i) + 1)
            out.append(np.asarray(block[0]))
        return out


def _stack(images: list[np.ndarray]) -> Any:
    if len({img.shape for img in images}) == 1:
        return np.stack(images)
    return images


def open_images(images: Any, *, dataset: str | None = None) -> ImageCollection:
    """Wrap *images* as an :class:`ImageCollection`.

    Parameters
    ----------
    images : array, str, os.PathLike, list of paths, iterable, ImageCollection
        * an array ``(N, 3, H, W)`` or channel-last ``(N, H, W, 3)`` (uint8 0-255 or float in
          [0, 1]), also an ``h5py.Dataset`` or a memory map;
        * an HDF5 file (``.h5``/``.hdf5``) with *dataset* naming the images dataset (NSD's
          ``imgBrick``), or ``"file.h5:imgBrick"``;
        * a folder of image files, one image file or a list of image files;
        * any other iterable (a generator) yielding ``(3, H, W)`` images or ``(B, 3, H, W)``
          batches: read once, so it can be ranked but not shown in figures.
    dataset : str, optional
        The dataset inside an HDF5 file.

    Returns
    -------
    ImageCollection

    Raises
    ------
    InvalidParameterError
        For an HDF5 file without a dataset name, or a dataset that is not there.
    StimulusError
        For anything else that is not images (as :func:`berg_core.as_stimulus` says).
    """
    if isinstance(images, ImageCollection):
        return images
    if isinstance(images, (str, os.PathLike)):
        text = os.fspath(images)
        path, _, inner = (
            text.partition(":") if ".h5:" in text or ".hdf5:" in text else (text, "", "")
        )
        if path.endswith((".h5", ".hdf5")):
            name = inner or dataset
            if not name:
                raise InvalidParameterError(
                    f"images={text!r} is an HDF5 file: name its images dataset with dataset= "
                    f"(--dataset) or as 'file.h5:NAME' (NSD: imgBrick)"
                )
            import h5py

            if not Path(path).is_file():
                raise InvalidParameterError(f"images={text!r}: no such file")
            with h5py.File(path, "r") as file:
                if name not in file or not isinstance(file[name], h5py.Dataset):
                    raise InvalidParameterError(
                        f"dataset={name!r} is not a dataset of {path}; it has: "
                        f"{', '.join(sorted(file)) or 'nothing'}"
                    )
                shape = file[name].shape
            if len(shape) != 4 or 3 not in (shape[1], shape[-1]):
                raise StimulusError(
                    f"{path}:{name} has shape {shape}; expected (N, 3, H, W) or (N, H, W, 3)"
                )
            return ImageCollection(h5=(Path(path), name), description=repr(text))
        return ImageCollection(stimulus=as_stimulus(images), description=repr(text))
    if isinstance(images, np.ndarray) or type(images).__name__ == "Dataset":
        shape = tuple(images.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[-1]):
            raise StimulusError(
                f"images has shape {shape}; expected (N, 3, H, W) or channel-last (N, H, W, 3)"
            )
        return ImageCollection(array=images, description=f"array{shape}")
    if isinstance(images, (list, tuple)):
        return ImageCollection(stimulus=as_stimulus(list(images)), description="a list")
    if isinstance(images, Iterable):
        return ImageCollection(iterable=images, description=type(images).__name__)
    raise StimulusError(
        f"images is a {type(images).__name__}; expected an array, an HDF5 file, a folder, a list "
        f"of image files or an iterable of images"
    )
