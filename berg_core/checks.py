"""Checks of what a model reads from a file, before it is used.

The safe loader (:mod:`berg_core.safe_npy`) guarantees that a model file holds only arrays and
plain containers; this module checks that they are the *right* ones: a dict where a dict
belongs, an array of the right dtype kind, number of dimensions and sizes where an array belongs,
and index arrays whose every value is a valid index. Anything else raises
:class:`~berg_core.errors.ModelLoadError` naming the file, the key path inside it
(``metadata['fmri']['lh_fsaverage_rois']['V1v']``), what was found and what was expected.

Array checks look at the dtype and shape only, so they cost nothing on memory-mapped weights;
only :func:`require_indices` reads values, and it is meant for small index arrays.

Index arrays must have an integer dtype: a float array is refused even when its values are whole
numbers (the reference toolkit stores indices as int64, the output of ``np.where``, so a float
index array means the file was not written by it, and casting would silently truncate ``10.7`` to
vertex 10), and a boolean array is refused (it is a mask, not a list of indices; read as indices
it would select vertex 0 and 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from berg_core.errors import ModelLoadError, describe_value

__all__ = ["Location", "require_array", "require_indices", "require_mapping"]

#: Accepted dtype kinds (:attr:`numpy.dtype.kind`) by name, and how messages spell them.
_KINDS = {
    "floating": ("f", "a floating-point"),
    "integer": ("iu", "an integer"),
    "numeric": ("fiu", "a numeric (integer or floating-point)"),
}


@dataclass(frozen=True)
class Location:
    """A value's place: the file it came from and its key path inside the file's object.

    Index it to go one level down: ``Location(path, "metadata")["fmri"]["voxel_coords"]`` prints
    as ``<path>: metadata['fmri']['voxel_coords']``.

    Parameters
    ----------
    file : str or os.PathLike
        The file (or another description of the source, e.g. ``"weights file"``).
    key : str
        The key path inside it, starting with the name of the top-level object.
    """

    file: str | PathLike[str]
    key: str

    def __getitem__(self, key: object) -> Location:
        """The location of ``self[key]``."""
        return Location(self.file, f"{self.key}[{key!r}]")

    def __str__(self) -> str:
        return f"{self.file}: {self.key}"

    def error(self, found: str, expected: str) -> ModelLoadError:
        """A :class:`ModelLoadError` saying what is at this location and what was expected."""
        return ModelLoadError(f"{self} is {found}; expected {expected}")


def _found(value: Any) -> str:
    """What *value* is, for a message (arrays by shape and dtype, other objects by type)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    return f"a {type(value).__name__} ({describe_value(value)})"


def require_mapping(value: Any, where: Location, keys: Sequence[str] = ()) -> Mapping[str, Any]:
    """*value* if it is a dict holding every key of *keys*; :class:`ModelLoadError` otherwise.

    Parameters
    ----------
    value : object
        What was read from the file.
    where : Location
        Where it was read from.
    keys : sequence of str
        Keys it must have.

    Returns
    -------
    Mapping
        *value* itself.

    Raises
    ------
    ModelLoadError
        If *value* is not a mapping or lacks a key (the message lists the keys it has).
    """
    wanted = f"a dict with key(s) {', '.join(keys)}" if keys else "a dict"
    if not isinstance(value, Mapping):
        raise where.error(_found(value), wanted)
    missing = [key for key in keys if key not in value]
    if missing:
        present = ", ".join(map(str, value)) or "none"
        raise ModelLoadError(
            f"{where} lacks key(s) {', '.join(missing)}; expected {wanted} (has: {present})"
        )
    return value


def require_array(
    value: Any,
    where: Location,
    *,
    kind: str,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    what: str = "",
) -> np.ndarray:
    """*value* if it is an array of dtype *kind* and the given shape; :class:`ModelLoadError` else.

    Only the dtype and the shape are looked at: no data is read, so this is free on
    memory-mapped arrays.

    Parameters
    ----------
    value : object
        What was read from the file.
    where : Location
        Where it was read from.
    kind : {"floating", "integer", "numeric"}
        Accepted dtype kind (booleans, complex numbers, strings and objects are never numeric).
    shape : sequence of int or None, optional
        Required shape; ``None`` entries accept any size along that axis.
    ndim : int, optional
        Required number of dimensions (implied by *shape*).
    what : str
        What the array holds, appended to the expectation (``"of vertex indices"``).

    Returns
    -------
    numpy.ndarray
        *value* itself (not copied, not converted).

    Raises
    ------
    ModelLoadError
        If *value* is not an :class:`numpy.ndarray`, or its dtype or shape is wrong.
    """
    kinds, kind_text = _KINDS[kind]
    if shape is not None:
        ndim = len(shape)
    expected = kind_text + (f" {ndim}-D" if ndim is not None else "") + " array"
    if shape is not None:
        sizes = ", ".join("n" if size is None else str(size) for size in shape)
        expected += f" of shape ({sizes}{',' if len(shape) == 1 else ''})"
    if what:
        expected += f" {what}"
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        raise where.error(_found(value), expected)
    if ndim is not None and value.ndim != ndim:
        raise where.error(_found(value), expected)
    if shape is not None and any(
        size is not None and actual != size for actual, size in zip(value.shape, shape, strict=True)
    ):
        raise where.error(_found(value), expected)
    return value


def require_indices(value: Any, where: Location, *, size: int, what: str = "indices") -> np.ndarray:
    """*value* as int64 if it is a 1-D integer array of indices in ``0..size-1``.

    Empty arrays are valid. Values are read (meant for small index arrays, not for weights).

    Parameters
    ----------
    value : object
        What was read from the file.
    where : Location
        Where it was read from.
    size : int
        Length of the axis the indices index.
    what : str
        What the indices are, for the message (``"fsaverage vertex indices"``).

    Returns
    -------
    numpy.ndarray
        A new int64 array with the same values, in the same order.

    Raises
    ------
    ModelLoadError
        If *value* is not a 1-D integer array (float and boolean arrays included, see the
        module's documentation) or a value is outside ``0..size-1``.
    """
    allowed = f"of {what} in 0..{size - 1}"
    array = require_array(value, where, kind="integer", ndim=1, what=allowed)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = array.min(), array.max()
    if low < 0 or high >= size:
        bad = low if low < 0 else high
        position = int(np.flatnonzero(array == bad)[0])
        raise where.error(
            f"an array holding {bad.item()} at position {position}", f"only {what} in 0..{size - 1}"
        )
    return array.astype(np.int64)
