"""Stimuli as references the workers read themselves: file paths, a ``.npy`` file, an HDF5 dataset.

Only an in-memory array has to travel from the client, and then only each shard's slice. Every
reference has a digest (names, sizes and modification times of files; the bytes of an array)
that keys a run, so a restarted run knows its finished shards.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import StimulusError
from berg_core.stimulus import Stimulus, as_stimulus

__all__ = ["StimulusRef", "hdf5_stimulus", "stimulus_ref"]

_HASH_CHUNK = 64  # images hashed at a time


@dataclass(frozen=True)
class StimulusRef:
    """Where the images of a run are, read shard by shard on the workers.

    Attributes
    ----------
    kind : {"paths", "npy", "hdf5", "array"}
    n : int
        Number of images.
    paths : tuple of str, optional
        ``paths``: the image files, in order.
    file : str, optional
        ``npy`` and ``hdf5``: the file.
    dataset : str, optional
        ``hdf5``: the dataset ``(N, 3, H, W)`` in *file*.
    array : numpy.ndarray, optional
        ``array``: the images (a shard's slice once cut by :meth:`shard`).
    offset : int
        Index of the first image of *array* in the run.
    root : str, optional
        ``paths``: the client's working folder, against which relative paths are read.
    """

    kind: str
    n: int
    paths: tuple[str, ...] | None = None
    file: str | None = None
    dataset: str | None = None
    array: np.ndarray | None = None
    offset: int = 0
    root: str | None = None

    @property
    def sources(self) -> list[str] | None:
        """The image file of each stimulus (``stimulus_sources``), or ``None``."""
        return list(self.paths) if self.paths is not None else None

    def digest(self) -> str:
        """A hash of the images' identity (files: name, size, mtime; arrays: the bytes)."""
        h = hashlib.sha256(f"{self.kind}:{self.n}".encode())
        if self.kind == "paths":
            for path in self.paths or ():
                h.update(_file_key(path))
        elif self.kind in ("npy", "hdf5"):
            h.update(_file_key(self.file or "") + str(self.dataset).encode())
        else:
            array = self.array
            assert array is not None
            h.update(f"{array.dtype.str}{array.shape}".encode())
            for start in range(0, len(array), _HASH_CHUNK):
                h.update(np.ascontiguousarray(array[start : start + _HASH_CHUNK]).tobytes())
        return h.hexdigest()

    def shard(self, start: int, stop: int) -> StimulusRef:
        """The reference a task gets: itself, or for an array the slice ``start:stop`` only."""
        if self.kind != "array":
            return self
        assert self.array is not None
        return StimulusRef("array", stop - start, array=self.array[start:stop], offset=start)

    def read(self, start: int, stop: int) -> Stimulus:
        """Images ``start:stop`` of the run, validated (:func:`berg_core.stimulus.as_stimulus`)."""
        if self.kind == "paths":
            assert self.paths is not None
            root = self.root or ""
            return as_stimulus([os.path.join(root, p) for p in self.paths[start:stop]])
        if self.kind == "npy":
            array = np.load(self.file, mmap_mode="r", allow_pickle=False)
            return as_stimulus(np.asarray(array[start:stop]))
        if self.kind == "hdf5":
            import h5py

            with h5py.File(self.file, "r") as h5:
                return as_stimulus(h5[self.dataset][start:stop])
        assert self.array is not None
        return as_stimulus(self.array[start - self.offset : stop - self.offset])


def _file_key(path: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StimulusError(f"stimulus file {path}: cannot read it ({exc.strerror})") from None
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogatepass")


def hdf5_stimulus(path: str | os.PathLike[str], dataset: str) -> StimulusRef:
    """Images in an HDF5 dataset ``(N, 3, H, W)``, read slice by slice on the workers.

    Raises
    ------
    StimulusError
        A missing file or dataset, or one that is not ``(N, 3, H, W)`` numbers.
    """
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
                raise StimulusError(f"stimulus {path}: no dataset {dataset!r} in the file")
            shape, dtype = h5[dataset].shape, h5[dataset].dtype
    except OSError as exc:
        raise StimulusError(f"stimulus {path}: not a readable HDF5 file ({exc})") from None
    if len(shape) != 4 or shape[1] != 3 or dtype.kind not in "uif":
        raise StimulusError(
            f"stimulus {path}:{dataset}: {shape} {dtype}; expected (N, 3, H, W) numbers"
        )
    return StimulusRef("hdf5", int(shape[0]), file=os.fspath(Path(path).resolve()), dataset=dataset)


def stimulus_ref(stimulus: Any) -> StimulusRef:
    """A :class:`StimulusRef` for what :func:`berg_distributed.encode` accepts.

    A :class:`StimulusRef` as it is; a ``.npy`` file name: read on the workers (memory-mapped);
    anything else goes through :func:`~berg_core.stimulus.as_stimulus`: folders, image files and
    lists of them become paths read on the workers, arrays and PIL images are read here and their
    shards sent.

    Raises
    ------
    StimulusError
        What :func:`~berg_core.stimulus.as_stimulus` refuses, or a ``.npy`` file that is not a
        plain ``(N, 3, H, W)`` array.
    """
    if isinstance(stimulus, StimulusRef):
        return stimulus
    if isinstance(stimulus, (str, os.PathLike)) and str(stimulus).lower().endswith(".npy"):
        path = Path(stimulus)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise StimulusError(
                f"stimulus {path}: not a plain numeric .npy array ({exc})"
            ) from None
        if array.ndim != 4 or array.shape[1] != 3:
            raise StimulusError(f"stimulus {path}: shape {array.shape}; expected (N, 3, H, W)")
        return StimulusRef("npy", int(array.shape[0]), file=os.fspath(path.resolve()))
    checked = as_stimulus(stimulus)
    if checked.sources is not None:
        return StimulusRef("paths", len(checked), paths=tuple(checked.sources), root=os.getcwd())
    if checked.array is not None:
        return StimulusRef("array", len(checked), array=checked.array)
    images = checked.batch(0, len(checked))
    if isinstance(images, list):
        raise StimulusError(
            "stimulus: PIL images of different sizes; save them as files or pass one array"
        )
    return StimulusRef("array", len(checked), array=images)
