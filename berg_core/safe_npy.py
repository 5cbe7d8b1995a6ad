"""Read the reference toolkit's pickled ``.npy`` files without running code from them.

The reference toolkit stores weights and metadata as Python dicts saved with
``np.save(path, dict)``: a ``.npy`` file holding a 0-d object array whose payload is a pickle.
``np.load(path, allow_pickle=True)`` would execute whatever that pickle names, so a file
downloaded from anywhere could run code on load. :func:`load_pickled_npy` instead walks the
pickle's opcodes with a small virtual machine of its own that knows only what pickles of numpy
data need (protocols 2 to 5): numpy arrays, numpy scalars and dtypes, and plain Python containers
and values. Any other opcode, and any global outside :data:`ALLOWED_GLOBALS` (``os.system``,
``builtins.eval``, a class of some library), raises :class:`~berg_core.errors.ModelLoadError`;
the allowed globals are never called either: each has a handler here that checks its arguments
and builds the value itself.
A few scikit-learn classes (:data:`ESTIMATORS`: the ``PCA``, ``StandardScaler`` and
``LinearRegression`` objects the reference toolkit pickles in its THINGS EEG2 weights) are read
as data too: scikit-learn is neither imported nor called, and each object becomes the plain dict
of its stored attributes, which may only be numbers, strings, ``None`` and numeric arrays.

The file is memory-mapped, not read: a byte payload of at least 1 MiB is skipped over, and the
array it holds becomes a read-only :class:`numpy.memmap` of the file (pages are read when used),
so loading a 0.55 GB weights file costs almost no memory, and :func:`read_rows` later reads
only the selected rows. Smaller payloads, and object arrays, are built in memory exactly as numpy
builds them.

A pickle of a few hundred bytes can describe far more than it holds (a value shared by reference
at every level of a deep structure, one payload rebuilt at every reference, an object array of a
huge shape, keys that all hash alike). The machine therefore runs on a budget, whose constants
are below (:data:`MAP_THRESHOLD` to :data:`MAX_DIMS`): what it allocates and what it hashes is
charged as it goes, against :data:`BUDGET_PER_BYTE` units per byte of pickle read so far plus
:data:`BUDGET_FLOOR`; so memory stays within a small multiple of the file's size (plus the
memory-mapped arrays) and time is linear in it. Every value's expanded size (a shared value
counted each time it appears) is bounded by the same figure, so that code walking the result
(``json.dumps``, ``repr``, :func:`in_memory`) does bounded work; nesting is bounded by
:data:`MAX_DEPTH`, a container that contains itself is refused, and so are more than
:data:`MAX_HASH_COLLISIONS` distinct keys of one dict or set with the same hash. Anything beyond
raises an error naming the byte of the opcode that went over.
"""

from __future__ import annotations

import _codecs
import mmap
import pickle
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from math import prod
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from berg_core.errors import ModelLoadError, describe_value

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.26
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

__all__ = [
    "ALLOWED_GLOBALS",
    "BUDGET_FLOOR",
    "BUDGET_PER_BYTE",
    "ESTIMATORS",
    "MAP_THRESHOLD",
    "MAX_DEPTH",
    "MAX_DIMS",
    "MAX_HASH_COLLISIONS",
    "MAX_INT_BYTES",
    "in_memory",
    "load_pickled_npy",
    "loads_restricted",
    "read_rows",
]

# -- the loader's budget: every limit it enforces, in one place ----------------------------------

#: Byte payloads at least this long are left in the file: arrays made of them are memory-mapped
#: (each payload may back one array only).
MAP_THRESHOLD = 1 << 20
#: Deepest nesting of containers, of dtypes in dtypes, and of MARKs a file may have; the
#: reference files nest 4 deep.
MAX_DEPTH = 100
#: Budget units per byte of pickle read into memory (payloads left in the file do not count).
#: One unit is one byte the loader allocates beyond the values the opcodes themselves push
#: (array data copied into memory, ``bytearray`` and ``_codecs.encode`` results, elements copied
#: into sets and object arrays, dtype fields), or one value visited while hashing a dict key or
#: set element. The same figure bounds the expanded size of every value: the number of values a
#: walk of it meets when shared references are followed each time (``json.dumps``, ``repr``).
BUDGET_PER_BYTE = 8
#: Budget units every file has, whatever its size.
BUDGET_FLOOR = 1 << 20
#: Most distinct keys of one dict (or elements of one set) whose hashes agree in their low 32 bits.
#: Python's dicts and sets take time quadratic in the number of such keys; keys of real data
#: (strings with randomized hashes, small ints) come nowhere near.
MAX_HASH_COLLISIONS = 8
#: Longest Python int (``LONG1``/``LONG4``), in bytes: 2,466 decimal digits, below the 4,300 digits
#: Python converts to text.
MAX_INT_BYTES = 1024
#: Most dimensions of an array (numpy's own limit since numpy 2.0).
MAX_DIMS = 64

_REFUSAL = "only numpy arrays and plain Python containers are allowed in berg data files"


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something that is not data."""


class _Corrupt(pickle.UnpicklingError):
    """The pickle is malformed, truncated or inconsistent."""


# -- values that live only on the machine's stack and memo ---------------------------------------


class _Global:
    """An allowed global: the object itself, and the machine's handlers for calling it."""

    __slots__ = ("call", "name", "new", "obj")

    def __init__(self, name: str, obj: Any, call: str | None, new: str | None) -> None:
        self.name = name
        self.obj = obj
        self.call = call
        self.new = new


class _Span:
    """A large byte payload left in the file: ``length`` bytes at ``offset``."""

    __slots__ = ("kind", "length", "mapped", "offset", "value")

    def __init__(self, offset: int, length: int, kind: type) -> None:
        self.offset = offset
        self.length = length
        self.kind = kind
        self.mapped = False  # an array maps it already
        self.value: bytes | bytearray | None = None


class _Same(list):  # type: ignore[type-arg]
    """Distinct keys of one dict or set whose hashes share their low 32 bits."""

    __slots__ = ()


class _ArrayStub:
    """``_reconstruct(ndarray, ...)`` before its BUILD; ``result`` is the array after it."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: np.ndarray | None = None


class _EstimatorStub:
    """An allow-listed scikit-learn object before its BUILD; ``result`` is its attribute dict."""

    __slots__ = ("name", "result")

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: dict[str, Any] | None = None


class _NotData:
    """Stands for an allow-listed scikit-learn class: instantiated as data only, never a value."""

    __slots__ = ()


_NOT_DATA = _NotData()


class _DtypeStub:
    """``numpy.dtype(typestr, align, copy)``; ``result`` is fixed by its BUILD or first use."""

    __slots__ = ("align", "result", "typestr")

    def __init__(self, typestr: str, align: bool) -> None:
        self.typestr = typestr
        self.align = align
        self.result: np.dtype | None = None


_INTERNAL = (_Global, _Span, _ArrayStub, _DtypeStub, _EstimatorStub)
_INTERNAL_KINDS = frozenset(_INTERNAL)
_MUTABLE = (list, dict, set, OrderedDict)
_MUTABLE_KINDS = frozenset(_MUTABLE)
_CONTAINERS = frozenset([list, dict, set, OrderedDict, tuple, frozenset])
_SIMPLE = frozenset([str, int, float, bool, type(None), bytes, list, dict, set, OrderedDict])
_LEAVES = frozenset([str, int, float, bool, type(None), bytes])
_DTYPE_KINDS = frozenset("biufcmMSUVO")
#: The byte order numpy's ndarray.__setstate__ swaps to native while unpickling.
_SWAPPED = ">" if sys.byteorder == "little" else "<"
_TYPESTR = re.compile(r"[biufcmMSUVO][0-9]{0,10}")  # what numpy writes: "f4", "V12", "M8"
_DTYPE_CLASS = re.compile(r"[A-Za-z0-9]+DType")
#: Protocol-2 pickles name builtins as Python 2 did.
_PY2_NAMES = {
    ("__builtin__", "set"): ("builtins", "set"),
    ("__builtin__", "frozenset"): ("builtins", "frozenset"),
    ("__builtin__", "bytearray"): ("builtins", "bytearray"),
    ("__builtin__", "complex"): ("builtins", "complex"),
    ("__builtin__", "slice"): ("builtins", "slice"),
    ("__builtin__", "xrange"): ("builtins", "range"),
    ("__builtin__", "bytes"): ("builtins", "bytes"),
}


#: scikit-learn classes whose pickled objects are read as the dict of their stored attributes
#: (``{"components_": array, "mean_": array, "n_components": 250, ...}``), without importing
#: scikit-learn or calling anything: each class under its module paths since scikit-learn 0.20.
ESTIMATORS: frozenset[tuple[str, str]] = frozenset(
    [
        ("sklearn.decomposition._pca", "PCA"),
        ("sklearn.decomposition.pca", "PCA"),
        ("sklearn.preprocessing._data", "StandardScaler"),
        ("sklearn.preprocessing.data", "StandardScaler"),
        ("sklearn.linear_model._base", "LinearRegression"),
        ("sklearn.linear_model.base", "LinearRegression"),
    ]
)


def _table() -> dict[tuple[str, str], tuple[Any, str | None, str | None]]:
    # (module, name) -> (the object, handler for REDUCE, handler for NEWOBJ)
    table: dict[tuple[str, str], tuple[Any, str | None, str | None]] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = (
            _multiarray._reconstruct,
            "_call_reconstruct",
            None,
        )
        table[(f"{core}.multiarray", "scalar")] = (_multiarray.scalar, "_call_scalar", None)
        table[(f"{core}.numeric", "_frombuffer")] = (_numeric._frombuffer, "_call_frombuffer", None)
    table.update(
        {
            ("numpy", "ndarray"): (np.ndarray, None, None),
            ("numpy", "dtype"): (np.dtype, "_call_dtype", "_call_dtype"),
            ("_codecs", "encode"): (_codecs.encode, "_call_encode", None),  # bytes in protocol 2
            ("builtins", "bytes"): (bytes, "_call_bytes", "_call_bytes"),  # b"" in protocol 2
            ("builtins", "set"): (set, "_call_set", "_new_set"),
            ("builtins", "frozenset"): (frozenset, "_call_frozenset", "_call_frozenset"),
            ("builtins", "bytearray"): (bytearray, "_call_bytearray", "_new_bytearray"),
            ("builtins", "complex"): (complex, "_call_complex", "_call_complex"),
            ("builtins", "slice"): (slice, "_call_slice", "_call_slice"),
            ("builtins", "range"): (range, "_call_range", "_call_range"),
            ("collections", "OrderedDict"): (
                OrderedDict,
                "_call_ordered_dict",
                "_call_ordered_dict",
            ),
        }
    )
    # scikit-learn objects the reference toolkit pickles (its THINGS EEG2 weights hold one PCA
    # per repetition): never imported nor called; each becomes the dict of its stored attributes
    for module, name in ESTIMATORS:
        table[(module, name)] = (_NOT_DATA, None, "_new_estimator")
    return table


_GLOBALS = _table()

#: ``(module, name)`` pairs a pickle may refer to. None of them is ever called as such: each has
#: a handler that checks its arguments and only rebuilds data. (numpy's DType classes, e.g.
#: ``numpy.dtypes.Float64DType``, may also appear, as values only.)
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(_GLOBALS)


def _brief(value: Any) -> str:
    """*value* for a message, without walking it (it may be large, or shared many times)."""
    if type(value) in _LEAVES:
        return describe_value(value)
    if type(value) in _CONTAINERS and len(value) <= 8 and all(type(v) in _LEAVES for v in value):
        return describe_value(value)
    size = f" of {len(value)} items" if type(value) in _CONTAINERS else ""
    return f"a {type(value).__name__.lstrip('_')}{size}"


def _describe(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(type(arg).__name__.lstrip("_") for arg in args) + ")"


def _estimator_value(item: Any, nested: bool = False) -> bool:
    """Whether *item* may be an attribute of a scikit-learn object read as data."""
    kind = type(item)
    if kind in (str, int, float, bool, type(None)):
        return True
    if isinstance(item, (np.ndarray, np.generic)):
        return item.dtype.kind in "biufcUS"
    if kind in (list, tuple) and not nested:
        return all(_estimator_value(element, True) for element in item)
    return False


#: ``NPY_ALIGNED_STRUCT``: the flag of a structured dtype built with ``align=True``.
_ALIGNED_STRUCT = 0x80
#: Units numpy's datetime64/timedelta64 dtypes may carry.
_TIME_UNITS = frozenset(["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"])


def _dtype_from_state(typestr: str, state: tuple[Any, ...], offset: int) -> np.dtype:
    """The dtype a ``numpy.dtype`` BUILD describes, made with numpy's public constructors.

    *state* has the shape :meth:`_Machine.dtype_state` checked: ``(version, byte order,
    subarray, names, fields, itemsize, alignment, flags[, datetime metadata])``. The dtype is
    built from what the state says it is (a subarray, a structure, a flexible or builtin type),
    then every other entry of the state must agree with it; anything else is refused.
    """
    _, order, subarray, names, fields, elsize, alignment, flags = state[:8]
    kind = typestr[0]
    bad = f"inconsistent dtype state {_brief(state)} for {typestr!r} at byte {offset}"
    try:
        if subarray is not None:
            if kind != "V" or names is not None or fields is not None:
                raise _Corrupt(bad)
            dtype = np.dtype((subarray[0], subarray[1]))
        elif names is not None:
            if kind != "V":
                raise _Corrupt(bad)
            titles = [fields[name][2] if len(fields[name]) == 3 else None for name in names]
            keys = set(names) | {title for title in titles if title is not None}
            if len(keys) != len(names) + sum(t is not None for t in titles) or set(fields) != keys:
                raise _Corrupt(bad)
            pairs = zip(names, titles, strict=True)
            if any(t is not None and fields[t] != fields[n] for n, t in pairs):
                raise _Corrupt(bad)
            spec: dict[str, Any] = {
                "names": list(names),
                "formats": [fields[name][0] for name in names],
                "offsets": [fields[name][1] for name in names],
                "itemsize": elsize,
            }
            if any(title is not None for title in titles):
                spec["titles"] = titles
            dtype = np.dtype(spec, align=bool(flags & _ALIGNED_STRUCT))
        elif fields is not None:
            raise _Corrupt(bad)
        elif kind in "mM":
            if len(state) != 9 or state[8] is None:
                raise _Corrupt(bad)
            unit, count, denominator, events = state[8][1]
            unit = unit.decode("ascii")
            if unit == "generic" and count == 1:
                dtype = np.dtype(f"{kind}8")
            elif unit in _TIME_UNITS and 1 <= count < 2**31 and denominator == events == 1:
                dtype = np.dtype(f"{kind}8[{'' if count == 1 else count}{unit}]")
            else:
                raise _Corrupt(bad)
        elif kind in "SUV":
            if elsize < 0 or (kind == "U" and elsize % 4):
                raise _Corrupt(bad)
            dtype = np.dtype(f"{kind}{elsize // 4 if kind == 'U' else elsize}")
        else:
            dtype = np.dtype(typestr)
        if order in "<>" and dtype.str[0] != "|" and dtype.str[0] != order:
            dtype = dtype.newbyteorder(order)
    except (TypeError, ValueError, KeyError, IndexError, UnicodeDecodeError, OverflowError):
        raise _Corrupt(bad) from None
    if (
        dtype.flags != flags
        or (elsize != -1 and dtype.itemsize != elsize)
        or (alignment != -1 and dtype.alignment != alignment)
        or (order in "<>" and dtype.str[0] not in (order, "|"))
        or (len(state) == 9) != (kind in "mM")
    ):
        raise _Corrupt(bad)
    return dtype


def _canonical_dtype(dtype: np.dtype) -> np.dtype:
    """Rebuild *dtype* with numpy's validating constructors; refuse it if anything differs.

    A second line of defence behind :func:`_dtype_from_state` (``dtype.__setstate__`` would
    trust field offsets past the item size, object fields hidden from the flags and odd
    alignments, each letting numpy read or write outside an array's memory). Only the
    canonical rebuild leaves this function.
    """
    if dtype.kind not in _DTYPE_KINDS:
        raise _Refused(f"refusing dtype {dtype!r}: {_REFUSAL}")
    if dtype.metadata:
        raise _Refused(f"refusing dtype metadata {dict(dtype.metadata)!r}: {_REFUSAL}")
    try:
        if dtype.subdtype is not None:
            base, shape = dtype.subdtype
            canonical = np.dtype((base, shape))
        elif dtype.names is not None:
            fields = dtype.fields
            assert fields is not None
            spec: dict[str, Any] = {
                "names": list(dtype.names),
                "formats": [fields[name][0] for name in dtype.names],
                "offsets": [fields[name][1] for name in dtype.names],
                "itemsize": dtype.itemsize,
            }
            titles = [fields[name][2] if len(fields[name]) > 2 else None for name in dtype.names]
            if any(title is not None for title in titles):
                spec["titles"] = titles
            canonical = np.dtype(spec, align=dtype.isalignedstruct)
        else:
            canonical = np.dtype(dtype.str)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise _Corrupt(f"inconsistent dtype {dtype!r}: {exc}") from None
    if not (
        canonical == dtype
        and canonical.str == dtype.str
        and canonical.itemsize == dtype.itemsize
        and canonical.flags == dtype.flags
        and canonical.alignment == dtype.alignment
        and canonical.isalignedstruct == dtype.isalignedstruct
    ):
        raise _Corrupt(f"inconsistent dtype state: {dtype!r} is not what numpy would build")
    return canonical


class _Machine:
    """The pickle virtual machine: one :meth:`run` over ``buf[start:end]``.

    Parameters
    ----------
    buf : bytes or mmap.mmap
        The pickle (or the whole file it is in).
    start, end : int
        Where the pickle starts, and where the data ends.
    file : file object or None
        The open file *buf* maps; large payloads are memory-mapped from it. ``None``: read them.
    """

    def __init__(self, buf: bytes | mmap.mmap, start: int, end: int, file: BinaryIO | None):
        self.buf = buf
        self.pos = start
        self.op_pos = start
        self.end = end
        self.file = file
        self.proto = 0
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        # id -> (nesting depth, expanded size) of every container, object array and dtype built
        # (an entry is reset when an id is reused)
        self.info: dict[int, tuple[int, int]] = {}
        # id of a dict or set -> {low 32 bits of a key's hash: the distinct keys with them}
        self.hashes: dict[int, dict[int, Any]] = {}
        # the budget: units spent, and bytes of the pickle left in the file (not in the base)
        self.start = start
        self.spent = 0
        self.skipped = 0
        # ids of lists/dicts/sets already inside another value: they may not change any more
        self.sealed: set[int] = set()
        # id -> [tuple holding stubs or spans, its resolved twin]; keeps the tuple alive
        self.impure: dict[int, Any] = {}
        # the allowed global whose handler runs (handlers receive only the arguments)
        self.calling: _Global | None = None
        self.dispatch: dict[int, Callable[[], Any]] = {
            code: getattr(self, method) for code, method in _OPCODES.items()
        }

    # -- reading -----------------------------------------------------------------------------

    def take(self, n: int) -> bytes:
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise _Corrupt(
                f"truncated pickle: {n} bytes needed at byte {start}, the data ends at {self.end}"
            )
        self.pos = stop
        return self.buf[start:stop]

    def take_int(self, fmt: str, n: int) -> int:
        return struct.unpack(fmt, self.take(n))[0]

    def take_line(self) -> str:
        stop = self.buf.find(b"\n", self.pos, min(self.end, self.pos + 256))
        if stop < 0:
            raise _Corrupt(f"truncated or malformed GLOBAL at byte {self.op_pos}")
        line = self.buf[self.pos : stop]
        self.pos = stop + 1
        return line.decode("utf-8")

    # -- the stack ---------------------------------------------------------------------------

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise _Corrupt(f"stack underflow at byte {self.op_pos}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise _Corrupt(f"stack underflow at byte {self.op_pos}")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise _Corrupt(f"no MARK for the opcode at byte {self.op_pos}")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    # -- values ------------------------------------------------------------------------------

    def value(self, item: Any) -> Any:
        """*item* as it goes into the result: stubs, spans, globals become what they stand for."""
        kind = type(item)
        if kind in _SIMPLE:
            return item
        if kind is tuple:
            entry = self.impure.get(id(item))
            if entry is None or entry[0] is not item:
                return item
            if entry[1] is None:
                self.charge(8 * len(item), "a tuple")
                resolved = tuple(self.value(element) for element in item)
                depth, size = self.adopt(resolved)  # arrays and dtypes now: measure again
                entry[1] = self.new(resolved, 1 + depth, 1 + size)
            return entry[1]
        if kind is _Span:
            if item.value is None:
                self.skipped -= item.length  # its bytes are in memory now: they count
                self.charge(item.length, "a byte string")
                data = self.buf[item.offset : item.offset + item.length]
                item.value = data if item.kind is bytes else bytearray(data)
            return item.value
        if kind is _ArrayStub:
            if item.result is None:
                raise _Corrupt(f"array used before its state was set, at byte {self.op_pos}")
            return item.result
        if kind is _DtypeStub:
            return self.dtype(item)
        if kind is _EstimatorStub:
            if item.result is None:
                raise _Corrupt(f"{item.name} used before its state was set, at byte {self.op_pos}")
            return item.result
        if kind is _Global:
            if item.obj is _NOT_DATA:
                raise _Refused(f"refusing {item.name} as a value: {_REFUSAL}")
            return item.obj
        return item

    # -- the budget ------------------------------------------------------------------------

    def limit(self) -> int:
        """Budget units allowed so far: in proportion to the pickle bytes read into memory."""
        return BUDGET_FLOOR + BUDGET_PER_BYTE * (self.pos - self.start - self.skipped)

    def charge(self, units: int, what: str) -> None:
        """Spend *units* of the budget on *what*; refuse the file when it is spent."""
        self.spent += units
        if self.spent > self.limit():
            raise _Refused(
                f"{what} at byte {self.op_pos} takes the loader past its budget of "
                f"{self.limit():,} units for the {self.pos - self.start:,} bytes read so far "
                f"(berg_core.safe_npy.BUDGET_PER_BYTE per byte + BUDGET_FLOOR): "
                "a data file this small does not need that much memory or work"
            )

    def measure(self, item: Any) -> tuple[int, int]:
        """(nesting depth, expanded size) of *item*: leaves are (0, 1)."""
        kind = type(item)
        if kind in _LEAVES:
            return (0, 1)
        if kind in _CONTAINERS:
            return self.info.get(id(item), (1, 1))
        if kind is np.ndarray:
            return self.info.get(id(item), (1, 1)) if item.dtype.hasobject else (0, 1)
        if isinstance(item, np.dtype):
            return self.info.get(id(item), (0, 1))
        return (0, 1)

    def new(self, value: Any, depth: int, size: int) -> Any:
        """Register a container (object array, dtype) just built with its depth and size."""
        self.check(depth, size)
        key = id(value)
        if depth == 1 and size == 1:  # what measure() assumes of an unknown container
            self.info.pop(key, None)
        else:
            self.info[key] = (depth, size)
        self.sealed.discard(key)
        self.hashes.pop(key, None)
        return value

    def check(self, depth: int, size: int) -> None:
        if depth > MAX_DEPTH:
            raise _Refused(f"data nested more than {MAX_DEPTH} levels deep, at byte {self.op_pos}")
        if size > BUDGET_FLOOR and size > self.limit():
            raise _Refused(
                f"data expands to {size:,} values at byte {self.op_pos} (a shared value counts "
                f"each time it appears), more than the {self.limit():,} the "
                f"{self.pos - self.start:,} bytes read so far allow "
                "(berg_core.safe_npy.BUDGET_PER_BYTE per byte + BUDGET_FLOOR)"
            )

    def adopt(self, items: Any) -> tuple[int, int]:
        """Seal the containers among *items* (about to go inside another): max depth, sum size."""
        deepest = 0
        total = 0
        info = self.info
        for item in items:
            kind = type(item)
            if kind in _LEAVES:
                total += 1
                continue
            if kind in _CONTAINERS:
                key = id(item)
                if kind in _MUTABLE_KINDS:
                    self.sealed.add(key)
                depth, size = info.get(key, (1, 1))
            else:
                depth, size = self.measure(item)
            total += size
            if depth > deepest:
                deepest = depth
        return deepest, total

    def mutable(self, target: Any, kinds: tuple[type, ...], what: str) -> Any:
        if type(target) not in kinds:
            raise _Refused(f"refusing {what} on a {type(target).__name__}: {_REFUSAL}")
        if id(target) in self.sealed:
            raise _Refused(f"refusing {what} on a container already in use: {_REFUSAL}")
        return target

    def grow(self, target: Any, items: list[Any]) -> None:
        """*items* are about to go into *target*: refuse a cycle, update its depth and size."""
        for item in items:
            if item is target:
                raise _Refused(
                    f"refusing a {type(target).__name__} that contains itself, at byte "
                    f"{self.op_pos}: {_REFUSAL}"
                )
        depth, size = self.info.get(id(target), (1, 1))
        deepest, total = self.adopt(items)
        depth, size = max(depth, 1 + deepest), size + total
        self.check(depth, size)
        self.info[id(target)] = (depth, size)

    def hashed(self, keys: Any, table: dict[int, Any]) -> None:
        """Check *keys* before they go into a dict or set whose keys *table* holds.

        *table* maps the low 32 bits of each key's hash to the key, or to a :class:`_Same` list
        of the distinct keys that share them. Hashing a key visits all of it (tuples do not keep
        their hash): that is charged first. Keys whose hashes agree make Python's dicts and sets
        slow (each insert compares with all of them): more than :data:`MAX_HASH_COLLISIONS`
        distinct ones in one container are refused.
        """
        measure = self.measure
        total = 0
        for key in keys:
            total += 1 if type(key) in _LEAVES else measure(key)[1]
        self.charge(total, "hashing keys")
        for key in keys:
            low = hash(key) & 0xFFFF_FFFF
            other = table.setdefault(low, key)
            if other is not key:
                self.collide(table, low, key, other)

    def collide(self, table: dict[int, Any], low: int, key: Any, other: Any) -> None:
        same = other if type(other) is _Same else _Same([other])
        table[low] = same
        self.charge(len(same) * self.measure(key)[1], "comparing keys")
        if any(key is known or key == known for known in same):
            return
        same.append(key)
        if len(same) > MAX_HASH_COLLISIONS:
            raise _Refused(
                f"refusing {len(same)} distinct keys of one dict or set with the same hash "
                f"(low 32 bits 0x{low:08x}) at byte {self.op_pos}: more than "
                f"berg_core.safe_npy.MAX_HASH_COLLISIONS = {MAX_HASH_COLLISIONS}, which "
                "would take time quadratic in their number"
            )

    def keyed(self, container: Any, depth: int, size: int, table: dict[int, Any]) -> Any:
        """:meth:`new` for a dict or set built in one go; *table*: its keys, for later inserts."""
        self.new(container, depth, size)
        self.hashes[id(container)] = table
        return container

    def table(self, target: Any) -> dict[int, Any]:
        """The keys of the dict or set *target* (built empty, or by :meth:`keyed`)."""
        return self.hashes.setdefault(id(target), {})

    def tuple_of(self, items: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        result = tuple(items)
        depth, size = self.adopt(result)
        self.new(result, 1 + depth, 1 + size)
        for item in result:
            kind = type(item)
            if kind in _INTERNAL_KINDS or (kind is tuple and id(item) in self.impure):
                self.impure[id(result)] = [result, None]
                break
        return result

    def shape(self, item: Any) -> tuple[int, ...]:
        shape = self.value(item)
        if (
            type(shape) is not tuple
            or len(shape) > MAX_DIMS
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise _Corrupt(f"bad array shape {_brief(shape)} at byte {self.op_pos}")
        return shape

    def dtype(self, item: Any) -> np.dtype:
        """The dtype *item* stands for; from now on its state may not change."""
        if type(item) is _DtypeStub:
            if item.result is None:
                item.result = self.make_dtype(item, None)
            return item.result
        if isinstance(item, np.dtype):  # from a container: a canonical dtype built by make_dtype
            return item
        raise _Corrupt(f"expected a dtype at byte {self.op_pos}, found {type(item).__name__}")

    def make_dtype(self, stub: _DtypeStub, state: Any) -> np.dtype:
        try:
            dtype = np.dtype(stub.typestr, stub.align, True)  # always a private copy
        except (TypeError, ValueError) as exc:
            raise _Corrupt(f"bad dtype {stub.typestr!r}: {exc}") from None
        depth, size = 1, 1
        if state is not None:
            state = self.dtype_state(state)
            # what it is made of: the subarray's dtype or the fields' dtypes (compared, hashed and
            # copied by numpy with it)
            parts = [state[2][0]] if state[2] is not None else []
            parts += [field[0] for field in state[4].values()] if state[4] is not None else []
            deepest, total = self.adopt(parts)
            depth, size = 1 + deepest, 1 + total
            self.check(depth, size)
            self.charge(8 * size, f"a dtype of {size:,} parts")
            # never dtype.__setstate__: it trusts its state, and inconsistent states corrupt
            # numpy's reference counts (a crash, later, in the garbage collector)
            dtype = _dtype_from_state(stub.typestr, state, self.op_pos)
        canonical = _canonical_dtype(dtype)
        if canonical.names is None and canonical.subdtype is None:
            return canonical  # possibly a builtin dtype numpy shares: nothing to register
        return self.new(canonical, depth, size)

    def dtype_state(self, state: Any) -> tuple[Any, ...]:
        """Check the shape of a dtype state before numpy sees it."""
        state = self.value(state)
        if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _Corrupt(f"bad dtype state at byte {self.op_pos}")
        _, order, subarray, names, fields, elsize, alignment, flags = state[:8]
        ok = order in ("<", ">", "|", "=") and all(
            type(n) is int for n in (elsize, alignment, flags)
        )
        if subarray is not None:
            ok = ok and (
                type(subarray) is tuple
                and len(subarray) == 2
                and isinstance(subarray[0], np.dtype)
                and type(subarray[1]) is tuple
                and all(type(n) is int and n >= 0 for n in subarray[1])
            )
        if names is not None or fields is not None:
            ok = ok and type(names) is tuple and type(fields) is dict
            ok = ok and all(type(name) is str and name in fields for name in names)
            for key, field in fields.items() if ok else ():
                ok = ok and (
                    type(key) is str
                    and type(field) is tuple
                    and len(field) in (2, 3)
                    and isinstance(field[0], np.dtype)
                    and type(field[1]) is int
                    and field[1] >= 0
                    and (len(field) == 2 or field[2] is None or type(field[2]) is str)
                )
        if len(state) == 9:
            # datetime: (metadata, (unit, num, den, events)); metadata is None (numpy 2) or an
            # empty dict (numpy 1.x)
            extra = state[8]
            ok = ok and (
                extra is None
                or (
                    type(extra) is tuple
                    and len(extra) == 2
                    and (extra[0] is None or (type(extra[0]) is dict and not extra[0]))
                    and type(extra[1]) is tuple
                    and len(extra[1]) == 4
                    and type(extra[1][0]) is bytes
                    and all(type(n) is int for n in extra[1][1:])
                )
            )
        if not ok:
            raise _Corrupt(f"bad dtype state {_brief(state)} at byte {self.op_pos}")
        return state

    def payload(self, item: Any, nbytes: int, what: str) -> _Span | bytes | bytearray:
        """The raw bytes of an array: a span in the file, or bytes; *nbytes* long."""
        if type(item) is not _Span:
            item = self.value(item)
            if type(item) not in (bytes, bytearray):
                raise _Corrupt(f"{what}: raw data is a {type(item).__name__}, not bytes")
        length = item.length if type(item) is _Span else len(item)
        if length != nbytes:
            raise _Corrupt(f"{what} needs {nbytes} bytes; the file holds {length}")
        return item

    def memmap(self, span: _Span, dtype: np.dtype, shape: tuple[int, ...], order: str) -> Any:
        if span.mapped:  # numpy never writes one payload for two arrays; each map costs a mapping
            raise _Refused(f"refusing a second array on the payload at byte {span.offset}")
        span.mapped = True
        return np.memmap(
            self.file, dtype=dtype, mode="r", offset=span.offset, shape=shape, order=order
        )

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> Any:
        """Execute the opcodes up to STOP; the unpickled object."""
        dispatch = self.dispatch
        buf = self.buf
        end = self.end
        memo = self.memo
        try:
            while True:
                pos = self.pos
                if pos >= end:
                    raise _Corrupt(f"truncated pickle: no STOP before byte {end}")
                self.op_pos = pos
                code = buf[pos]
                self.pos = pos + 1
                # the two commonest opcodes (every string is SHORT_BINUNICODE + MEMOIZE), inline;
                # anything out of bounds goes to the checked handlers below
                if code == 0x94 and self.stack:  # MEMOIZE
                    memo[len(memo)] = self.stack[-1]
                    continue
                if code == 0x8C and pos + 1 < end:  # SHORT_BINUNICODE
                    stop = pos + 2 + buf[pos + 1]
                    if stop <= end:
                        self.stack.append(str(buf[pos + 2 : stop], "utf-8", "surrogatepass"))
                        self.pos = stop
                        continue
                if code == 0x2E:  # STOP
                    return self.finish()
                handler = dispatch.get(code)
                if handler is None:
                    raise self.unknown(code)
                handler()
        except (TypeError, ValueError, OverflowError, KeyError, IndexError, RecursionError) as exc:
            raise _Corrupt(f"corrupt pickle at byte {self.op_pos}: {exc}") from None
        except MemoryError:
            raise _Refused(f"out of memory at byte {self.op_pos}") from None

    def finish(self) -> Any:
        result = self.value(self.pop())
        if isinstance(result, _INTERNAL):
            raise _Corrupt("the pickle ends with an unfinished value")
        return result

    def unknown(self, code: int) -> _Refused:
        if code in (0x50, 0x51):  # PERSID, BINPERSID
            return _Refused("refusing persistent references in a berg data file")
        import pickletools  # only to name the opcode in the message

        name = getattr(pickletools.code2op.get(chr(code)), "name", f"0x{code:02x}")
        return _Refused(f"refusing pickle opcode {name} at byte {self.op_pos}: {_REFUSAL}")

    # -- opcodes (STOP is handled by run) ----------------------------------------------------

    def op_proto(self) -> None:
        self.proto = self.take(1)[0]
        if not 2 <= self.proto <= 5:
            raise _Refused(f"refusing pickle protocol {self.proto}: berg reads protocols 2 to 5")

    def op_frame(self) -> None:
        length = self.take_int("<Q", 8)
        if self.pos + length > self.end:
            raise _Corrupt(f"truncated pickle: frame of {length} bytes at byte {self.op_pos}")

    def op_global(self) -> None:
        module = self.take_line()
        name = self.take_line()
        self.push(self.lookup(module, name))

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if type(module) is not str or type(name) is not str:
            raise _Corrupt(f"STACK_GLOBAL on non-strings at byte {self.op_pos}")
        self.push(self.lookup(module, name))

    def lookup(self, module: str, name: str) -> _Global:
        if self.proto < 3:
            module, name = _PY2_NAMES.get((module, name), (module, name))
        entry = _GLOBALS.get((module, name))
        if entry is not None:
            return _Global(f"{module}.{name}", *entry)
        if module == "numpy.dtypes" and _DTYPE_CLASS.fullmatch(name):
            cls = getattr(np.dtypes, name, None)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                return _Global(f"{module}.{name}", cls, None, None)
        raise _Refused(f"refusing to load {module}.{name}: {_REFUSAL}")

    def op_mark(self) -> None:
        if len(self.metastack) >= MAX_DEPTH:
            raise _Refused(f"data nested more than {MAX_DEPTH} levels deep, at byte {self.op_pos}")
        self.metastack.append(self.stack)
        self.stack = []

    def op_empty_tuple(self) -> None:
        self.push(self.tuple_of(()))

    def op_tuple(self) -> None:
        self.push(self.tuple_of(self.pop_mark()))

    def op_tuple1(self) -> None:
        self.push(self.tuple_of((self.pop(),)))

    def op_tuple2(self) -> None:
        second = self.pop()
        self.push(self.tuple_of((self.pop(), second)))

    def op_tuple3(self) -> None:
        third = self.pop()
        second = self.pop()
        self.push(self.tuple_of((self.pop(), second, third)))

    def op_empty_list(self) -> None:
        self.push(self.new([], 1, 1))

    def op_list(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        depth, size = self.adopt(items)
        self.push(self.new(items, 1 + depth, 1 + size))

    def op_empty_dict(self) -> None:
        self.push(self.new({}, 1, 1))

    def op_dict(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        if len(items) % 2:
            raise _Corrupt(f"odd number of items for a dict at byte {self.op_pos}")
        table: dict[int, Any] = {}
        self.hashed(items[::2], table)
        depth, size = self.adopt(items)
        result = dict(zip(items[::2], items[1::2], strict=True))
        self.push(self.keyed(result, 1 + depth, 1 + size, table))

    def op_empty_set(self) -> None:
        self.push(self.new(set(), 1, 1))

    def op_frozenset(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        self.push(self.hashed_set(frozenset, items))

    def op_additems(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        target = self.mutable(self.top(), (set,), "ADDITEMS")
        self.hashed(items, self.table(target))
        self.grow(target, items)
        target.update(items)

    def op_append(self) -> None:
        item = self.value(self.pop())
        target = self.mutable(self.top(), (list,), "APPEND")
        self.grow(target, [item])
        target.append(item)

    def op_appends(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        target = self.mutable(self.top(), (list,), "APPENDS")
        self.grow(target, items)
        target.extend(items)

    def op_setitem(self) -> None:
        item = self.value(self.pop())
        key = self.value(self.pop())
        target = self.mutable(self.top(), (dict, OrderedDict), "SETITEM")
        self.hashed((key,), self.table(target))
        self.grow(target, [key, item])
        target[key] = item

    def op_setitems(self) -> None:
        items = [self.value(item) for item in self.pop_mark()]
        if len(items) % 2:
            raise _Corrupt(f"odd number of items for SETITEMS at byte {self.op_pos}")
        target = self.mutable(self.top(), (dict, OrderedDict), "SETITEMS")
        self.hashed(items[::2], self.table(target))
        self.grow(target, items)
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def op_binput(self) -> None:
        self.memo[self.take(1)[0]] = self.top()

    def op_long_binput(self) -> None:
        self.memo[self.take_int("<I", 4)] = self.top()

    def op_memoize(self) -> None:
        self.memo[len(self.memo)] = self.top()

    def get(self, index: int) -> None:
        try:
            self.push(self.memo[index])
        except KeyError:
            raise _Corrupt(f"memo entry {index} missing at byte {self.op_pos}") from None

    def op_binget(self) -> None:
        self.get(self.take(1)[0])

    def op_long_binget(self) -> None:
        self.get(self.take_int("<I", 4))

    def op_none(self) -> None:
        self.push(None)

    def op_newtrue(self) -> None:
        self.push(True)

    def op_newfalse(self) -> None:
        self.push(False)

    def op_binint(self) -> None:
        self.push(self.take_int("<i", 4))

    def op_binint1(self) -> None:
        self.push(self.take(1)[0])

    def op_binint2(self) -> None:
        self.push(self.take_int("<H", 2))

    def op_long1(self) -> None:
        self.push(int.from_bytes(self.take(self.take(1)[0]), "little", signed=True))

    def op_long4(self) -> None:
        length = self.take_int("<i", 4)
        if length > MAX_INT_BYTES:
            raise _Refused(
                f"refusing an int of {length:,} bytes at byte {self.op_pos}: at most "
                f"berg_core.safe_npy.MAX_INT_BYTES = {MAX_INT_BYTES}"
            )
        self.push(int.from_bytes(self.take(length), "little", signed=True))

    def op_binfloat(self) -> None:
        self.push(struct.unpack(">d", self.take(8))[0])

    def text(self, length: int) -> None:
        self.push(str(self.take(length), "utf-8", "surrogatepass"))

    def op_short_binunicode(self) -> None:
        self.text(self.take(1)[0])

    def op_binunicode(self) -> None:
        self.text(self.take_int("<I", 4))

    def op_binunicode8(self) -> None:
        self.text(self.take_int("<Q", 8))

    def data(self, length: int, kind: type) -> None:
        if self.file is not None and length >= max(MAP_THRESHOLD, 1):
            span = _Span(self.pos, length, kind)
            if self.pos + length > self.end:
                raise _Corrupt(
                    f"truncated pickle: {length} bytes needed at byte {self.pos}, "
                    f"the data ends at {self.end}"
                )
            self.pos += length
            self.skipped += length
            self.push(span)
        else:
            data = self.take(length)
            self.push(data if kind is bytes else bytearray(data))

    def op_short_binbytes(self) -> None:
        self.data(self.take(1)[0], bytes)

    def op_binbytes(self) -> None:
        self.data(self.take_int("<I", 4), bytes)

    def op_binbytes8(self) -> None:
        self.data(self.take_int("<Q", 8), bytes)

    def op_bytearray8(self) -> None:
        self.data(self.take_int("<Q", 8), bytearray)

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        self.push(self.invoke(func, args, "call"))

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self.invoke(cls, args, "new"))

    def invoke(self, func: Any, args: Any, how: str) -> Any:
        if type(func) is not _Global:
            raise _Refused(f"refusing to call a {type(func).__name__}: {_REFUSAL}")
        handler = func.call if how == "call" else func.new
        if handler is None:
            verb = "call" if how == "call" else "instantiate"
            raise _Refused(f"refusing to {verb} {func.name}: {_REFUSAL}")
        if type(args) is not tuple:
            raise _Corrupt(f"arguments of {func.name} are not a tuple, at byte {self.op_pos}")
        self.adopt(args)
        self.calling = func
        result = getattr(self, handler)(args)
        if result is None:
            raise _Refused(f"refusing to call {func.name}{_describe(args)}: {_REFUSAL}")
        return result

    def op_build(self) -> None:
        state = self.pop()
        target = self.top()
        if type(target) is _ArrayStub:
            self.stack[-1] = self.build_array(target, state)
        elif type(target) is _DtypeStub:
            if target.result is not None:
                raise _Refused(f"refusing to change a dtype already in use: {_REFUSAL}")
            target.result = self.make_dtype(target, state)
        elif type(target) is _EstimatorStub:
            self.stack[-1] = self.build_estimator(target, self.value(state))
        else:
            raise _Refused(f"refusing BUILD on a {type(target).__name__}: {_REFUSAL}")

    def build_array(self, stub: _ArrayStub, state: Any) -> np.ndarray:
        """``ndarray.__setstate__``: (version, shape, dtype, fortran, rawdata)."""
        if stub.result is not None:
            raise _Refused(f"refusing to change an array already built: {_REFUSAL}")
        if type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1:
            state = state[1:]
        if type(state) is not tuple or len(state) != 4:
            raise _Corrupt(f"bad array state at byte {self.op_pos}")
        shape = self.shape(state[0])
        dtype = self.dtype(state[1])
        fortran = state[2]
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise _Corrupt(f"bad array order flag {_brief(fortran)} at byte {self.op_pos}")
        what = f"array at byte {self.op_pos} of shape {shape} and dtype {dtype}"
        size = prod(shape)
        if dtype.hasobject:
            raw = self.value(state[3])
            if type(raw) is not list or len(raw) != size:
                raise _Corrupt(f"{what}: expected a list of {size} objects")
            # numpy allocates size * itemsize bytes (a structured item may be mostly padding)
            self.charge(size * max(dtype.itemsize, 8), what)
            depth, expanded = self.measure(raw)
            self.check(1 + depth, expanded)
            array = _multiarray._reconstruct(np.ndarray, (0,), b"b")
            array.__setstate__((1, shape, dtype, bool(fortran), raw))
            self.new(array, 1 + depth, expanded)
        else:
            raw = self.payload(state[3], size * dtype.itemsize, what)
            if type(raw) is _Span and dtype.byteorder != _SWAPPED:
                array = self.memmap(raw, dtype, shape, "F" if fortran else "C")
            else:
                self.charge(size * dtype.itemsize, what)
                array = _multiarray._reconstruct(np.ndarray, (0,), b"b")
                # numpy swaps a non-native byte order here: such arrays are read, not mapped
                array.__setstate__((1, shape, dtype, bool(fortran), bytes(self.value(raw))))
        stub.result = array
        return array

    def build_estimator(self, stub: _EstimatorStub, state: Any) -> dict[str, Any]:
        """A scikit-learn object's ``__setstate__``: its attributes, kept as a plain dict.

        Only names mapped to numbers, strings, ``None``, numeric numpy arrays and scalars, and
        flat lists or tuples of numbers and strings are accepted: anything else (a class, a
        function, a nested object) is refused.
        """
        if stub.result is not None:
            raise _Refused(f"refusing to change a {stub.name} already built: {_REFUSAL}")
        if type(state) is not dict:
            raise _Refused(f"refusing {stub.name} with a {type(state).__name__} state: {_REFUSAL}")
        for key, item in state.items():
            if type(key) is not str or not _estimator_value(item):
                raise _Refused(
                    f"refusing {stub.name} whose attribute {_brief(key)} is {_brief(item)}: "
                    f"only numbers, strings, None and numeric arrays are read from it"
                )
        depth, size = self.adopt(list(state.values()))
        stub.result = self.new(dict(state), 1 + depth, 1 + size)
        return stub.result

    # -- handlers of the allowed globals (None: refuse these arguments) -----------------------

    def _new_estimator(self, args: tuple[Any, ...]) -> _EstimatorStub | None:
        name = self.calling.name if self.calling is not None else "an estimator"
        return _EstimatorStub(name) if args == () else None

    def _call_reconstruct(self, args: tuple[Any, ...]) -> _ArrayStub | None:
        if len(args) != 3 or type(args[0]) is not _Global or args[0].obj is not np.ndarray:
            return None
        if type(self.value(args[1])) is not tuple or type(self.value(args[2])) is not bytes:
            return None
        return _ArrayStub()

    def _call_scalar(self, args: tuple[Any, ...]) -> Any:
        if len(args) != 2:
            return None
        dtype = self.dtype(args[0])
        data = self.value(args[1])
        if dtype.hasobject or type(data) is not bytes:
            return None
        if len(data) != dtype.itemsize:
            raise _Corrupt(f"scalar of dtype {dtype} needs {dtype.itemsize} bytes, got {len(data)}")
        self.charge(dtype.itemsize, f"a scalar of dtype {dtype}")
        return _multiarray.scalar(dtype, data)

    def _call_frombuffer(self, args: tuple[Any, ...]) -> Any:
        if len(args) not in (4, 5):
            return None
        dtype = self.dtype(args[1])
        shape = self.shape(args[2])
        order = self.value(args[3])
        axes = self.value(args[4]) if len(args) == 5 else None
        if dtype.hasobject or order not in ("C", "F", "K"):
            return None
        if order == "K" and (type(axes) is not tuple or sorted(axes) != list(range(len(shape)))):
            return None
        what = f"array at byte {self.op_pos} of shape {shape} and dtype {dtype}"
        raw = self.payload(args[0], prod(shape) * dtype.itemsize, what)
        layout = "C" if order == "K" else order
        if type(raw) is _Span:
            array = self.memmap(raw, dtype, shape, layout)
        else:
            self.charge(len(raw), what)
            array = np.frombuffer(raw, dtype=dtype).reshape(shape, order=layout)
        return array.transpose(axes) if order == "K" else array

    def _call_dtype(self, args: tuple[Any, ...]) -> _DtypeStub | None:
        # numpy pickles dtype(typestr, align, copy); the copy flag is ignored: always a new dtype
        if not 1 <= len(args) <= 3:
            return None
        typestr, align, copy = args + (False, True)[len(args) - 1 :]
        if type(typestr) is not str or not _TYPESTR.fullmatch(typestr):
            return None
        if type(align) is not bool or type(copy) is not bool:
            return None
        return _DtypeStub(typestr, align)

    def _call_encode(self, args: tuple[Any, ...]) -> bytes | None:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            return None
        self.charge(len(args[0]), f"encoding {len(args[0]):,} characters")
        return args[0].encode("latin-1")

    def _call_bytes(self, args: tuple[Any, ...]) -> bytes | None:
        return b"" if not args else None

    def _items(self, args: tuple[Any, ...]) -> list[Any] | None:
        if not args:
            return []
        items = self.value(args[0]) if len(args) == 1 else None
        if type(items) not in (list, tuple, set, frozenset):
            return None
        self.charge(8 * len(items), f"copying {len(items):,} elements")
        return [self.value(item) for item in items]

    def hashed_set(self, kind: type, items: list[Any]) -> Any:
        """``set(items)`` or ``frozenset(items)``, its elements checked as keys."""
        table: dict[int, Any] = {}
        self.hashed(items, table)
        depth, size = self.adopt(items)
        return self.keyed(kind(items), 1 + depth, 1 + size, table)

    def _call_set(self, args: tuple[Any, ...]) -> set[Any] | None:
        items = self._items(args)
        return None if items is None else self.hashed_set(set, items)

    def _call_frozenset(self, args: tuple[Any, ...]) -> frozenset[Any] | None:
        items = self._items(args)
        return None if items is None else self.hashed_set(frozenset, items)

    # NEWOBJ of set, bytearray, OrderedDict: cls.__new__ makes an empty one (opcodes fill it)

    def _new_set(self, args: tuple[Any, ...]) -> set[Any] | None:
        return None if args else self.new(set(), 1, 1)

    def _new_bytearray(self, args: tuple[Any, ...]) -> bytearray | None:
        return None if args else bytearray()

    def _call_ordered_dict(self, args: tuple[Any, ...]) -> OrderedDict[Any, Any] | None:
        return None if args else self.new(OrderedDict(), 1, 1)

    def _call_bytearray(self, args: tuple[Any, ...]) -> bytearray | None:
        values = [self.value(arg) for arg in args]
        if not values:
            return bytearray()
        if type(values[0]) in (bytes, str):
            self.charge(len(values[0]), f"a bytearray of {len(values[0]):,} bytes")
        if len(values) == 1 and type(values[0]) is bytes:
            return bytearray(values[0])
        if len(values) == 2 and type(values[0]) is str and values[1] in ("latin1", "latin-1"):
            return bytearray(values[0], "latin-1")
        return None

    def _call_complex(self, args: tuple[Any, ...]) -> complex | None:
        if not 1 <= len(args) <= 2 or not all(type(arg) in (int, float) for arg in args):
            return None
        return complex(*args)

    def _call_slice(self, args: tuple[Any, ...]) -> slice | None:
        if not 1 <= len(args) <= 3 or not all(type(arg) in (int, type(None)) for arg in args):
            return None
        return slice(*args)

    def _call_range(self, args: tuple[Any, ...]) -> range | None:
        if not 1 <= len(args) <= 3 or not all(type(arg) is int for arg in args):
            return None
        return range(*args)


_OPCODES = {
    0x80: "op_proto",  # PROTO
    0x95: "op_frame",  # FRAME
    0x63: "op_global",  # GLOBAL  c
    0x93: "op_stack_global",  # STACK_GLOBAL
    0x28: "op_mark",  # MARK  (
    0x29: "op_empty_tuple",  # EMPTY_TUPLE  )
    0x74: "op_tuple",  # TUPLE  t
    0x85: "op_tuple1",  # TUPLE1
    0x86: "op_tuple2",  # TUPLE2
    0x87: "op_tuple3",  # TUPLE3
    0x5D: "op_empty_list",  # EMPTY_LIST  ]
    0x6C: "op_list",  # LIST  l
    0x7D: "op_empty_dict",  # EMPTY_DICT  }
    0x64: "op_dict",  # DICT  d
    0x8F: "op_empty_set",  # EMPTY_SET
    0x91: "op_frozenset",  # FROZENSET
    0x90: "op_additems",  # ADDITEMS
    0x61: "op_append",  # APPEND  a
    0x65: "op_appends",  # APPENDS  e
    0x73: "op_setitem",  # SETITEM  s
    0x75: "op_setitems",  # SETITEMS  u
    0x71: "op_binput",  # BINPUT  q
    0x72: "op_long_binput",  # LONG_BINPUT  r
    0x94: "op_memoize",  # MEMOIZE
    0x68: "op_binget",  # BINGET  h
    0x6A: "op_long_binget",  # LONG_BINGET  j
    0x4E: "op_none",  # NONE  N
    0x88: "op_newtrue",  # NEWTRUE
    0x89: "op_newfalse",  # NEWFALSE
    0x4A: "op_binint",  # BININT  J
    0x4B: "op_binint1",  # BININT1  K
    0x4D: "op_binint2",  # BININT2  M
    0x8A: "op_long1",  # LONG1
    0x8B: "op_long4",  # LONG4
    0x47: "op_binfloat",  # BINFLOAT  G
    0x8C: "op_short_binunicode",  # SHORT_BINUNICODE
    0x58: "op_binunicode",  # BINUNICODE  X
    0x8D: "op_binunicode8",  # BINUNICODE8
    0x43: "op_short_binbytes",  # SHORT_BINBYTES  C
    0x42: "op_binbytes",  # BINBYTES  B
    0x8E: "op_binbytes8",  # BINBYTES8
    0x96: "op_bytearray8",  # BYTEARRAY8
    0x52: "op_reduce",  # REDUCE  R
    0x81: "op_newobj",  # NEWOBJ
    0x62: "op_build",  # BUILD  b
}


def loads_restricted(data: bytes) -> Any:
    """Unpickle *data* allowing only numpy arrays and plain containers.

    Parameters
    ----------
    data : bytes
        A pickle of protocol 2 to 5.

    Returns
    -------
    object
        What ``pickle.loads(data)`` would return, for data made of numpy arrays, scalars and
        dtypes and plain Python containers and values. Arrays are built in memory.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle refers to anything outside :data:`ALLOWED_GLOBALS`, uses an opcode numpy
        data does not need, is malformed or truncated, or goes beyond the loader's budget (see
        the module's documentation); the message names the byte where that happened.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    return _Machine(buf, 0, len(buf), None).run()


def _read_pickle(stream: BinaryIO, start: int) -> Any:
    try:
        view = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # not a regular file: read it, arrays built in memory
        stream.seek(0)
        data = stream.read()
        return _Machine(data, start, len(data), None).run()
    with view:
        return _Machine(view, start, len(view), stream).run()


def load_pickled_npy(path: str | Path) -> Any:
    """Load a ``.npy`` file written by ``np.save(path, obj)`` where *obj* is a dict (or any object).

    Object arrays (the pickled dicts of the reference toolkit) are read with the restricted
    pickle machine of this module; a 0-d object array is unwrapped to the object it holds (as
    ``np.load(path, allow_pickle=True).item()`` would). Plain (non-object) ``.npy`` arrays are
    loaded as arrays.

    Arrays of at least 1 MiB come back as read-only :class:`numpy.memmap` views of the file: no
    copy is made and pages are read when used (:func:`read_rows` reads only the rows it is
    given). Smaller arrays are built in memory as numpy builds them. The mapped file must not be
    rewritten in place while its arrays are in use (replace it, as ``berg fetch`` does).

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
        If the file is missing, is not a ``.npy`` file, is truncated or corrupt, holds anything
        that is not data, or goes beyond the loader's budget (see the module's documentation).
        The message names the file and, for its pickle, the byte where that happened.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            if not dtype.hasobject:
                if prod(shape) * dtype.itemsize >= max(MAP_THRESHOLD, 1):
                    return np.load(path, mmap_mode="r", allow_pickle=False)
                stream.seek(0)
                return np.load(stream, allow_pickle=False)
            obj = _read_pickle(stream, stream.tell())
    except FileNotFoundError:
        raise ModelLoadError(f"file not found: {path}") from None
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"unsafe or corrupt data file {path}: {exc}") from None
    except (ValueError, EOFError, OSError) as exc:
        raise ModelLoadError(f"could not read {path} as a .npy file: {exc}") from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj


def read_rows(array: np.ndarray, rows: Any) -> np.ndarray:
    """``array[rows]``, as a new in-memory array; from a memory-mapped array, only those rows.

    Reading rows through a memory map makes the kernel read ahead around each one (on a 0.55 GB
    weights file, 700 rows of a ``coef_`` read ~150 MB from disk). Here read-ahead is off while
    the rows are gathered, so only their pages are read, and back on afterwards.

    Parameters
    ----------
    array : numpy.ndarray
        Any array; a :class:`numpy.memmap` from :func:`load_pickled_npy` benefits.
    rows : array_like of int
        Indices along the first axis (ascending order reads the file front to back).

    Returns
    -------
    numpy.ndarray
        ``array[rows]`` (a plain, writable array).
    """
    mapping = getattr(array, "_mmap", None)  # set by numpy.memmap (on views too)
    advise = getattr(mapping, "madvise", None)
    if advise is None or not hasattr(mmap, "MADV_RANDOM"):
        return np.asarray(array[rows])
    try:
        advise(mmap.MADV_RANDOM)
    except (OSError, ValueError):  # a closed mapping, or a platform that refuses it
        return np.asarray(array[rows])
    try:
        return np.asarray(array[rows])
    finally:
        advise(mmap.MADV_NORMAL)


def in_memory(obj: Any) -> Any:
    """Copy every memory-mapped array inside *obj* into a writable in-memory array.

    Dicts (``OrderedDict`` too), lists, tuples and object arrays are copied, keeping their types;
    every other value is shared with *obj*. A value that appears several times in *obj* is copied
    once and appears as many times in the copy (shared, not expanded); a container that contains
    itself is copied as one that contains its copy. Users get metadata they can modify and keep
    after the file changes; model weights stay mapped.

    Parameters
    ----------
    obj : object
        Usually what :func:`load_pickled_npy` returned.

    Returns
    -------
    object
        The copy.
    """
    return _InMemory().copy(obj)


class _InMemory:
    """One :func:`in_memory` copy: ``memo`` maps the id of each value copied to its copy."""

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.keep: list[Any] = []  # the originals, so that their ids stay theirs

    def copy(self, obj: Any) -> Any:
        done = self.memo.get(id(obj))
        if done is not None:
            return done
        if isinstance(obj, np.memmap):
            return self.remember(obj, np.array(obj))
        kind = type(obj)
        if kind not in (dict, OrderedDict, list, tuple) and not (
            kind is np.ndarray and obj.dtype.hasobject
        ):
            return obj
        if kind is tuple:
            # a tuple can only contain itself through a list or dict: those are in the memo
            return self.remember(obj, tuple([self.copy(item) for item in obj]))
        if kind is np.ndarray:
            result = np.empty_like(obj)
            self.remember(obj, result)
            for index in np.ndindex(obj.shape):
                result[index] = self.copy(obj[index])
            return result
        if kind is list:
            result = self.remember(obj, [])
            result.extend(self.copy(item) for item in obj)
            return result
        result = self.remember(obj, kind())
        for key, value in obj.items():
            result[key] = self.copy(value)
        return result

    def remember(self, obj: Any, copy: Any) -> Any:
        self.memo[id(obj)] = copy
        self.keep.append(obj)
        return copy
