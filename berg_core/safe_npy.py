"""Read the reference toolkit's pickled ``.npy`` files without running code from them.

The reference toolkit stores weights and metadata as Python dicts saved with
``np.save(path, dict)``: a ``.npy`` file holding a 0-d object array whose payload is a pickle.
``np.load(path, allow_pickle=True)`` would execute whatever that pickle names, so a file
downloaded from anywhere could run code on load. :func:`load_pickled_npy` instead unpickles with an
allow-list: numpy arrays, numpy scalars and dtypes, and plain Python containers and values. Any
other global a pickle refers to (``os.system``, ``builtins.eval``, a class of some library) raises
:class:`~berg_core.errors.ModelLoadError` before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import ModelLoadError

__all__ = ["ALLOWED_GLOBALS", "load_pickled_npy", "loads_restricted"]

_NUMPY_CORES = ("numpy.core", "numpy._core")

#: ``(module, name)`` pairs a pickle may refer to. Every one of them only rebuilds data.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(f"{core}.multiarray", "_reconstruct") for core in _NUMPY_CORES]
    + [(f"{core}.multiarray", "scalar") for core in _NUMPY_CORES]
    + [(f"{core}.numeric", "_frombuffer") for core in _NUMPY_CORES]
    + [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("collections", "OrderedDict"),
    ]
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy") and name.endswith("DType") and "dtypes" in module:
            # numpy >= 1.25 pickles dtype classes (numpy.dtypes.Float32DType) in some dtypes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only numpy arrays and plain Python containers "
            f"are allowed in berg data files"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent references in a berg data file")


def loads_restricted(data: bytes) -> Any:
    """Unpickle *data* allowing only numpy arrays and plain containers.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle refers to anything outside :data:`ALLOWED_GLOBALS`.
    """
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def load_pickled_npy(path: str | Path) -> Any:
    """Load a ``.npy`` file written by ``np.save(path, obj)`` where *obj* is a dict (or any object).

    Plain (non-object) ``.npy`` arrays are loaded as arrays. Object arrays are unpickled with the
    allow-list of this module; a 0-d object array is unwrapped to the object it holds (as
    ``np.load(path, allow_pickle=True).item()`` would).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    object
        Usually a dict of numpy arrays and nested dicts.

    Raises
    ------
    ModelLoadError
        If the file is missing, is not a ``.npy`` file, or holds anything that is not data.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(stream)
            if not dtype.hasobject:
                stream.seek(0)
                return np.load(stream, allow_pickle=False)
            obj = _RestrictedUnpickler(stream).load()
    except FileNotFoundError:
        raise ModelLoadError(f"file not found: {path}") from None
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"unsafe or corrupt data file {path}: {exc}") from None
    except (ValueError, EOFError, OSError) as exc:
        raise ModelLoadError(f"could not read {path} as a .npy file: {exc}") from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj
