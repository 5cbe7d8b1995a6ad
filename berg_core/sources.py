"""Image sources: one picklable reference to a collection of images, read block by block.

:func:`open_source` turns what a user names - image files, a folder, a ``.npy`` file, an HDF5
dataset (``"nsd_stimuli.hdf5:imgBrick"``), an array, a one-pass iterable - into an
:class:`ImageSource`. A source holds no pixels (except an in-memory array): it says where the
images are, so it can be pickled to another process that reads its own share
(:meth:`ImageSource.read`, :meth:`ImageSource.shard`), and a large collection is read one block at
a time (:meth:`ImageSource.blocks`), so memory holds one block whatever the collection's size.

Every block goes through :func:`berg_core.stimulus.as_stimulus`, so it meets the same checks as
any stimulus given to encode (rank, channels, value range, pixel limit, image decoding).

Layout: arrays, ``.npy`` files and HDF5 datasets may be channel-first ``(N, 3, H, W)`` or
channel-last ``(N, H, W, 3)`` (NSD's ``imgBrick`` is ``(73000, 425, 425, 3)`` ``uint8``);
channel-last blocks are transposed as they are read. ``layout="auto"`` takes channel-first when
axis 1 has 3 entries, else channel-last when the last axis has; give ``layout`` explicitly for a
shape where both hold, such as ``(N, 3, 32, 3)``.

This module needs numpy only; h5py is imported when an HDF5 file is opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import InvalidParameterError, StimulusError, describe_value
from berg_core.stimulus import Stimulus, as_stimulus
from berg_core.stimulus import _pixel_limit as pixel_limit

__all__ = ["HDF5_SUFFIXES", "LAYOUTS", "ImageSource", "open_source"]

#: File name endings read as HDF5 files (compared case-insensitively).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

#: Accepted values of ``layout``.
LAYOUTS = ("auto", "channels_first", "channels_last")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_HASH_CHUNK = 64  # images hashed at a time
_KINDS = ("paths", "npy", "hdf5", "array", "iterable")


@dataclass(frozen=True, eq=False)
class ImageSource:
    """Where a collection of images is, read block by block. Build one with :func:`open_source`.

    Attributes
    ----------
    kind : {"paths", "npy", "hdf5", "array", "iterable"}
    n : int or None
        Number of images; ``None`` for a one-pass iterable (``len()`` raises then).
    name : str
        How error messages name the source (``"stimulus"``, ``"--stimulus"``, ``"images"``).
    paths : tuple of str, optional
        ``paths``: the image files, in order.
    root : str, optional
        ``paths``: the folder relative paths are read against (the opening process's working
        folder, so another process reads the same files).
    file : str, optional
        ``npy`` and ``hdf5``: the file, as an absolute path.
    dataset : str, optional
        ``hdf5``: the dataset's name in *file*.
    channels_last : bool
        Whether the stored images are ``(N, H, W, 3)`` (transposed when read).
    dtype : str, optional
        The stored pixel dtype (``numpy.dtype.str``), for arrays, ``.npy`` and HDF5.
    array : array-like, optional
        ``array``: the images (a shard's slice once cut by :meth:`shard`).
    offset : int
        Index of the first image of *array* in the whole collection.
    iterable : iterable, optional
        ``iterable``: what yields the images, read once.
    max_pixels : int, optional
        The per-image pixel limit of :func:`~berg_core.stimulus.as_stimulus`.
    """

    kind: str
    n: int | None
    name: str = "stimulus"
    paths: tuple[str, ...] | None = None
    root: str | None = None
    file: str | None = None
    dataset: str | None = None
    channels_last: bool = False
    dtype: str | None = None
    array: Any = None
    offset: int = 0
    iterable: Any = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidParameterError(f"kind is {self.kind!r}; expected one of {_KINDS}")

    def __len__(self) -> int:
        if self.n is None:
            raise InvalidParameterError(
                f"{self.name} ({self.describe()}): a one-pass iterable has no length"
            )
        return self.n

    def __repr__(self) -> str:
        return f"ImageSource({self.describe()}, {self.n} images)"

    def __getstate__(self) -> dict[str, Any]:
        if self.kind == "iterable":
            raise InvalidParameterError(
                f"{self.name} ({self.describe()}): a one-pass iterable cannot be pickled (sent to "
                f"another process); give files, a .npy or HDF5 file, or an array"
            )
        return dict(self.__dict__)

    def describe(self) -> str:
        """A short human description: ``"images.h5:imgBrick"``, ``"12 files"``, ``"array"``."""
        if self.kind == "paths":
            return f"{len(self.paths or ())} image files"
        if self.kind == "npy":
            return str(self.file)
        if self.kind == "hdf5":
            return f"{self.file}:{self.dataset}"
        if self.kind == "array":
            return f"array {tuple(self.array.shape)} {self.array.dtype}"
        return f"one-pass {type(self.iterable).__name__}"

    @property
    def rereadable(self) -> bool:
        """Whether images can be read by index (everything but a one-pass iterable)."""
        return self.kind != "iterable"

    @property
    def sources(self) -> list[str] | None:
        """The image file of each image (``stimulus_sources`` in output files), or ``None``."""
        return list(self.paths) if self.paths is not None else None

    @property
    def pixel_kind(self) -> str:
        """``"float"`` for floating-point pixels, else ``"uint8"`` (see :class:`Stimulus`)."""
        return "float" if self.dtype is not None and np.dtype(self.dtype).kind == "f" else "uint8"

    # -- reading ---------------------------------------------------------------------------
    def read(self, start: int, stop: int) -> Stimulus:
        """Images ``start:stop`` (indices in the whole collection), validated.

        Raises
        ------
        InvalidParameterError
            A range outside ``0..n``, or a one-pass iterable (it cannot be read by index).
        StimulusError
            What :func:`~berg_core.stimulus.as_stimulus` refuses in these images, naming the source
            and the range.
        """
        self._check_range(start, stop)
        if self.kind == "paths":
            assert self.paths is not None
            root = self.root or ""
            files = [os.path.join(root, p) for p in self.paths[start:stop]]
            return as_stimulus(files, max_pixels=self.max_pixels)
        return self._checked(self._pixels(start, stop), f"images {start}-{stop - 1}")

    def blocks(self, size: int, start: int = 0) -> Iterator[tuple[int, Stimulus]]:
        """Yield ``(first_index, images)`` for consecutive blocks of *size* images from *start*.

        Memory holds one block at a time (plus, for a one-pass iterable, the item being split).
        """
        size = _positive(size, "size")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise InvalidParameterError(
                f"start is {describe_value(start)}; expected an integer >= 0"
            )
        if self.kind == "hdf5":  # one open file for every block: opening costs about 1 ms
            h5py = _h5py()
            with h5py.File(self.file, "r") as h5:
                for first in range(int(start), len(self), size):
                    stop = min(first + size, len(self))
                    block = self._pixels(first, stop, h5[self.dataset])
                    yield first, self._checked(block, f"images {first}-{stop - 1}")
            return
        if self.kind != "iterable":
            n = len(self)
            for first in range(int(start), n, size):
                yield first, self.read(first, min(first + size, n))
            return
        pending: list[np.ndarray] = []
        index = 0
        for item in self.iterable:
            for image in self._split(np.asarray(item), index):
                if index >= start:
                    pending.append(image)
                index += 1
                if len(pending) == size:
                    yield index - size, self._stacked(pending, index - size)
                    pending = []
        if pending:
            yield index - len(pending), self._stacked(pending, index - len(pending))

    def take(self, indices: Iterable[int]) -> Stimulus:
        """The images at *indices*, in that order (for figures: a few images).

        Raises
        ------
        InvalidParameterError
            An index outside ``0..n-1``, or a one-pass iterable, which cannot be read again.
        """
        if not self.rereadable:
            raise InvalidParameterError(
                f"{self.name} ({self.describe()}): a one-pass iterable cannot be read again; give "
                f"an array, a folder, a list of files, a .npy or an HDF5 file"
            )
        picked = [int(i) for i in indices]
        if not picked:
            raise InvalidParameterError("indices is empty; expected at least one image index")
        for i in picked:
            if not 0 <= i < len(self):
                raise InvalidParameterError(
                    f"index {i} is outside the {len(self)} images of {self.name} "
                    f"({self.describe()}); expected 0 to {len(self) - 1}"
                )
        if self.kind == "paths":
            assert self.paths is not None
            files = [os.path.join(self.root or "", self.paths[i]) for i in picked]
            return as_stimulus(files, max_pixels=self.max_pixels)
        images = np.concatenate([self._pixels(i, i + 1) for i in picked])
        return self._checked(images, f"images {picked}")

    def stimulus(self) -> Stimulus:
        """The whole collection as a :class:`Stimulus` for encode, read batch by batch.

        Files are checked on their headers now (as :func:`as_stimulus` does), channel-first arrays
        and ``.npy`` files on their values now; HDF5 datasets and channel-last layouts are checked
        block by block as they are read, so an out-of-range value is reported when its batch is.

        Raises
        ------
        StimulusError
            For a one-pass iterable: encode needs the number of images up front.
        """
        if self.kind == "iterable":
            raise StimulusError(
                f"{self.name} ({self.describe()}) is a one-pass iterable, whose length is unknown; "
                f"encode needs an array, files, a .npy or an HDF5 file (or encode its blocks())"
            )
        if self.kind == "paths":
            return self.read(0, len(self))
        if not self.channels_last and self.kind in ("npy", "array"):
            return as_stimulus(self._stored(), max_pixels=self.max_pixels)
        return Stimulus(source=self, max_pixels=pixel_limit(self.max_pixels))

    def shard(self, start: int, stop: int) -> ImageSource:
        """The reference another process needs for ``start:stop``: itself, or an array's slice."""
        self._check_range(start, stop)
        if self.kind != "array":
            return self
        local = slice(start - self.offset, stop - self.offset)
        return dataclasses.replace(self, n=stop - start, array=self.array[local], offset=start)

    # -- identity --------------------------------------------------------------------------
    def digest(self) -> str:
        """A SHA-256 hex digest of the collection's identity, cheap to compute.

        * files (``paths``, ``npy``): each file's name, size and modification time (ns);
        * ``hdf5``: the file's name, size and modification time, and the dataset's name, shape
          and dtype, read from the file now;
        * ``array``: dtype, shape and every byte.

        It does not detect pixels rewritten in place in a file whose size and modification time
        stay the same (a tool that restores the mtime, or a filesystem with coarse timestamps
        written twice within one tick), nor an HDF5 dataset changed without changing the file's
        size or mtime. Hash the bytes yourself when that matters.

        Raises
        ------
        InvalidParameterError
            For a one-pass iterable (it would be consumed).
        StimulusError
            A file that cannot be read any more.
        """
        if self.kind == "iterable":
            raise InvalidParameterError(
                f"{self.name} ({self.describe()}): a one-pass iterable has no digest"
            )
        h = hashlib.sha256(f"{self.kind}:{self.n}:{self.channels_last}".encode())
        if self.kind == "paths":
            for path in self.paths or ():
                h.update(self._file_key(os.path.join(self.root or "", path)))
        elif self.kind == "npy":
            h.update(self._file_key(str(self.file)))
        elif self.kind == "hdf5":
            h.update(self._file_key(str(self.file)))
            shape, dtype = _hdf5_layout(str(self.file), str(self.dataset), self.name)
            h.update(f"{self.dataset}\0{shape}\0{dtype.str}".encode())
        else:
            array = self.array
            h.update(f"{np.dtype(array.dtype).str}{tuple(array.shape)}{self.offset}".encode())
            for first in range(0, len(array), _HASH_CHUNK):
                h.update(np.ascontiguousarray(array[first : first + _HASH_CHUNK]).tobytes())
        return h.hexdigest()

    # -- internals -------------------------------------------------------------------------
    def _check_range(self, start: int, stop: int) -> None:
        if not self.rereadable:
            raise InvalidParameterError(
                f"{self.name} ({self.describe()}): a one-pass iterable cannot be read by index; "
                f"use blocks()"
            )
        first = self.offset if self.kind == "array" else 0
        if not (
            isinstance(start, (int, np.integer))
            and isinstance(stop, (int, np.integer))
            and first <= start < stop <= first + len(self)
        ):
            raise InvalidParameterError(
                f"images {start!r}:{stop!r} of {self.name} ({self.describe()}); expected "
                f"{first} <= start < stop <= {first + len(self)}"
            )

    def _stored(self) -> Any:
        """The stored array: the array itself, or the ``.npy`` file memory-mapped."""
        if self.kind == "npy":
            return _load_npy(Path(str(self.file)), self.name)
        return self.array

    def _pixels(self, start: int, stop: int, dataset: Any = None) -> np.ndarray:
        """Images ``start:stop`` as stored, channel-first; not yet validated.

        *dataset* is the HDF5 dataset when the caller holds the file open.
        """
        if dataset is not None:
            block = np.asarray(dataset[start:stop])
        elif self.kind == "hdf5":
            h5py = _h5py()
            with h5py.File(self.file, "r") as h5:
                block = np.asarray(h5[self.dataset][start:stop])
        else:
            block = np.asarray(self._stored()[start - self.offset : stop - self.offset])
        if self.channels_last:
            block = np.ascontiguousarray(block.transpose(0, 3, 1, 2))
        return block

    def _checked(self, images: np.ndarray, which: str) -> Stimulus:
        try:
            return as_stimulus(images, max_pixels=self.max_pixels)
        except StimulusError as exc:
            raise StimulusError(f"{self.name} {self.describe()}, {which}: {exc}") from None

    def _split(self, item: np.ndarray, index: int) -> list[np.ndarray]:
        """An iterable's item as ``(3, H, W)`` images."""
        if item.ndim == 3:
            parts = [item]
        elif item.ndim == 4:
            parts = list(item)
        else:
            raise StimulusError(
                f"{self.name}: item at image {index} of the iterable has shape {item.shape}; "
                f"expected (3, H, W) images or (B, 3, H, W) batches (or channel-last)"
            )
        out = []
        for image in parts:
            last = self.channels_last or (image.shape[0] != 3 and image.shape[-1] == 3)
            out.append(np.ascontiguousarray(image.transpose(2, 0, 1)) if last else image)
        return out

    def _stacked(self, images: list[np.ndarray], first: int) -> Stimulus:
        shapes = sorted({img.shape for img in images})
        if len(shapes) > 1:
            raise StimulusError(
                f"{self.name}: images {first}-{first + len(images) - 1} of the iterable have "
                f"shapes {shapes}; images of one block must share a size"
            )
        return self._checked(np.stack(images), f"images {first}-{first + len(images) - 1}")

    def _file_key(self, path: str) -> bytes:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise StimulusError(
                f"{self.name}: cannot read the file {path} ({exc.strerror})"
            ) from None
        return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogatepass")


def open_source(
    obj: Any,
    dataset: str | None = None,
    *,
    layout: str = "auto",
    max_pixels: int | None = None,
    name: str = "stimulus",
) -> ImageSource:
    """Wrap *obj* as an :class:`ImageSource`.

    Parameters
    ----------
    obj : ImageSource, str, os.PathLike, array, list, Stimulus, PIL image, iterable
        * an HDF5 file with *dataset*, or ``"file.h5:DATASET"`` (NSD: ``imgBrick``), holding
          ``(N, 3, H, W)`` or ``(N, H, W, 3)`` numbers (an ``h5py.Dataset`` is read the same way);
        * a ``.npy`` file, memory-mapped (never unpickled);
        * a folder, an image file or a list of image files (as :func:`as_stimulus`);
        * an array ``(N, 3, H, W)`` or ``(N, H, W, 3)``, or PIL images (stacked into one array);
        * any other iterable yielding ``(3, H, W)`` images or ``(B, 3, H, W)`` batches: read
          once, by :meth:`ImageSource.blocks` only.
    dataset : str, optional
        The images dataset of an HDF5 file (instead of ``"file.h5:DATASET"``).
    layout : {"auto", "channels_first", "channels_last"}
        Where the 3 colour channels are (see the module docstring).
    max_pixels : int, optional
        The per-image pixel limit of :func:`as_stimulus`.
    name : str
        How error messages name *obj* (a parameter or option name).

    Returns
    -------
    ImageSource

    Raises
    ------
    InvalidParameterError
        A bad *layout*, an HDF5 file without a dataset name, or a dataset that is not there (the
        message lists the datasets present).
    StimulusError
        Anything that is not images: a missing file, a file that is not HDF5 or ``.npy``, a
        shape that is not 4-D with 3 channels, a dtype that is not numbers, and whatever
        :func:`as_stimulus` refuses.
    """
    if layout not in LAYOUTS:
        raise InvalidParameterError(
            f"layout is {describe_value(layout)}; expected one of {LAYOUTS}"
        )
    common = {"name": name, "max_pixels": max_pixels}
    if isinstance(obj, ImageSource):
        return obj
    if type(obj).__module__.startswith("h5py") and type(obj).__name__ == "Dataset":
        return _open_hdf5(Path(obj.file.filename), obj.name, layout, common)
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        path, inner = _split_dataset(text)
        if inner is not None:
            if dataset is not None and dataset != inner:
                raise InvalidParameterError(
                    f"{name} {text!r} names dataset {inner!r} but dataset={dataset!r}; give one"
                )
            return _open_hdf5(Path(path), inner, layout, common)
        if dataset is not None or _is_hdf5_name(text):
            return _open_hdf5(Path(text), dataset, layout, common)
        if text.lower().endswith(".npy") and Path(text).is_file():
            array = _load_npy(Path(text), name)
            last = _channels_last(tuple(array.shape), layout, f"{name} {text}")
            return ImageSource(
                "npy", int(array.shape[0]), file=os.fspath(Path(text).resolve()),
                channels_last=last, dtype=array.dtype.str, **common,
            )  # fmt: skip
    if dataset is not None:
        raise InvalidParameterError(
            f"dataset={dataset!r} is given but {name} is not an HDF5 file ({describe_value(obj)})"
        )
    if isinstance(obj, np.ndarray):
        last = _channels_last(tuple(obj.shape), layout, name)
        if obj.dtype.kind not in "uif":
            as_stimulus(obj)  # its message names the dtype
        return ImageSource(
            "array", int(obj.shape[0]), array=obj, channels_last=last, dtype=obj.dtype.str,
            **common,
        )  # fmt: skip
    if isinstance(obj, (str, os.PathLike, list, tuple, Stimulus)) or _is_pil(obj):
        checked = as_stimulus(obj, max_pixels=max_pixels)
        if checked.sources is not None:
            return ImageSource(
                "paths", len(checked), paths=tuple(checked.sources), root=os.getcwd(), **common
            )
        if checked.array is not None:
            return open_source(checked.array, layout="channels_first", **common)
        images = checked.batch(0, len(checked))
        if isinstance(images, list):
            raise StimulusError(
                f"{name}: PIL images of different sizes; save them as files or pass one array"
            )
        return open_source(images, layout="channels_first", **common)
    if isinstance(obj, Iterable) and not isinstance(obj, (bytes, dict)):
        return ImageSource(
            "iterable", None, iterable=obj, channels_last=layout == "channels_last", **common
        )
    raise StimulusError(
        f"{name} is a {type(obj).__name__}; expected an array, an HDF5 file (file.h5:DATASET), a "
        f".npy file, a folder, image files, PIL images or an iterable of images"
    )


# -- helpers -------------------------------------------------------------------------------------


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(f"{what} is {describe_value(value)}; expected an integer >= 1")
    return int(value)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL")


def _is_hdf5_name(text: str) -> bool:
    return text.lower().endswith(HDF5_SUFFIXES)


def _split_dataset(text: str) -> tuple[str, str | None]:
    """``"file.h5:NAME"`` -> ``("file.h5", "NAME")`` when *text* itself is not a file."""
    path, sep, inner = text.rpartition(":")
    if not sep or not path or not inner or Path(text).exists():
        return text, None
    if _is_hdf5_name(path) or Path(path).is_file():
        return path, inner
    return text, None


def _channels_last(shape: tuple[int, ...], layout: str, what: str) -> bool:
    """Whether *shape* is channel-last, by *layout*; refuse anything not 4-D with 3 channels."""
    first = len(shape) == 4 and shape[1] == 3
    last = len(shape) == 4 and shape[-1] == 3
    if layout == "channels_first" and first:
        return False
    if layout == "channels_last" and last:
        return True
    if layout == "auto" and (first or last):
        return not first
    if len(shape) != 4:
        hint = " (a single image? add a batch axis)" if len(shape) == 3 else ""
        expected = "(N, 3, H, W) or channel-last (N, H, W, 3)"
    else:
        hint = ""
        expected = {
            "auto": "3 channels in axis 1, (N, 3, H, W), or in the last axis, (N, H, W, 3)",
            "channels_first": "(N, 3, H, W) with layout='channels_first'",
            "channels_last": "(N, H, W, 3) with layout='channels_last'",
        }[layout]
    raise StimulusError(
        f"{what} has shape {shape} ({len(shape)} dimensions); expected {expected}{hint}"
    )


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency of berg-core
        raise StimulusError("reading HDF5 images needs h5py: pip install h5py") from None
    return h5py


def _hdf5_layout(path: str, dataset: str | None, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of *dataset* in *path*; named errors for everything else."""
    where = Path(path)
    if not where.is_file():
        if not dataset:
            raise InvalidParameterError(
                f"{name} {path} is an HDF5 file: name its images dataset with dataset= or as "
                f"'file.h5:NAME' (NSD: imgBrick); and there is no such file"
            )
        raise StimulusError(f"{name} {path}: no such file")
    with where.open("rb") as handle:
        signature = handle.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise StimulusError(
            f"{name} {path}: not an HDF5 file (it does not start with the HDF5 signature); "
            f"expected an HDF5 file holding an images dataset"
        )
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as h5:
            datasets: list[str] = []
            h5.visititems(
                lambda key, item: datasets.append(key) if isinstance(item, h5py.Dataset) else None
            )
            if not dataset:
                raise InvalidParameterError(
                    f"{name} {path} is an HDF5 file: name its images dataset with dataset= or as "
                    f"'file.h5:NAME' (NSD: imgBrick); it has: {', '.join(datasets) or 'nothing'}"
                )
            item = h5.get(dataset)
            if not isinstance(item, h5py.Dataset):
                raise InvalidParameterError(
                    f"dataset={dataset!r} is not a dataset of {path}; it has: "
                    f"{', '.join(datasets) or 'nothing'}"
                )
            return tuple(item.shape), item.dtype
    except OSError as exc:
        raise StimulusError(f"{name} {path}: not a readable HDF5 file ({exc})") from None


def _open_hdf5(path: Path, dataset: str | None, layout: str, common: dict[str, Any]) -> ImageSource:
    name = common["name"]
    resolved = os.fspath(path.resolve())
    shape, dtype = _hdf5_layout(resolved if path.exists() else os.fspath(path), dataset, name)
    what = f"{name} {path}:{dataset}"
    last = _channels_last(shape, layout, what)
    if dtype.kind not in "uif":
        raise StimulusError(
            f"{what} has dtype {dtype}; expected integers 0-255 or floats in [0, 1]"
        )
    if shape[0] == 0:
        raise StimulusError(f"{what} has shape {shape}: it holds no images")
    return ImageSource(
        "hdf5", int(shape[0]), file=resolved, dataset=dataset, channels_last=last,
        dtype=dtype.str, **common,
    )  # fmt: skip


def _load_npy(path: Path, name: str) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only; never unpickles anything."""
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(_NPY_MAGIC))
        size = path.stat().st_size
        array = None
        if magic == _NPY_MAGIC:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:  # pickles, truncated or unreadable files
        raise StimulusError(f"{name} {path}: not a plain numeric .npy array ({exc})") from None
    if array is None:
        raise StimulusError(
            f"{name} {path}: not a .npy file ({size} bytes, without the NumPy header); give "
            f"an array saved with numpy.save, an image file or a folder"
        )
    return array
