"""Dtypes in model files are built with numpy's constructors, never with ``dtype.__setstate__``.

``numpy.dtype.__setstate__`` trusts its state: an inconsistent one (fields on a float, an object
field hidden from the flags, names without fields ...) corrupts numpy's reference counts, and
the process crashes later, in the garbage collector (this crashed the test suite once, far from
the test that loaded the file). The loader builds each dtype from what its state says it is and
refuses every state that disagrees with the result.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from berg_core.safe_npy import loads_restricted

ROOT = Path(__file__).resolve().parents[1]

DTYPES = [
    "f4",
    ">f8",
    "u1",
    "?",
    "c8",
    "O",
    "U3",
    "S5",
    "V8",
    "M8[ns]",
    "<m8[25s]",
    "M8",
    [("a", "<f4"), ("b", "O")],
    np.dtype([("a", "<f4"), ("b", "<i2")], align=True),
    ("<f4", (2, 3)),
    {"names": ["a"], "formats": ["<f4"], "offsets": [4], "itemsize": 12},
    [(("Title", "a"), "<f4")],
]


@pytest.mark.parametrize("spec", DTYPES, ids=repr)
def test_every_kind_of_dtype_round_trips(spec: object) -> None:
    dtype = np.dtype(spec)
    data = pickle.dumps([dtype, np.zeros(2, dtype=dtype)], protocol=2)
    loaded, expected = loads_restricted(data), pickle.loads(data)
    assert loaded[0] == dtype and loaded[0].str == dtype.str
    assert loaded[0].flags == dtype.flags and loaded[0].alignment == dtype.alignment
    # arrays as numpy rebuilds them (native byte order, subarray dims appended)
    assert loaded[1].dtype == expected[1].dtype and loaded[1].shape == expected[1].shape


class _Crafted:
    """Pickles as ``numpy.dtype(typestr)`` followed by a BUILD with *state*."""

    def __init__(self, typestr: str, state: tuple[object, ...]) -> None:
        self.typestr, self.state = typestr, state

    def __reduce__(self) -> tuple[object, ...]:
        return (np.dtype, (self.typestr, False, True), self.state)


@pytest.mark.parametrize(
    ("typestr", "state"),
    [
        ("f8", (3, "<", None, ("a",), {"a": (np.dtype("f4"), 0)}, 8, 8, 0)),  # fields on a float
        ("V8", (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)),  # hidden object
        ("V8", (3, "|", None, ("a", "b"), {"a": (np.dtype("f4"), 0)}, 8, 1, 16)),  # a name short
        ("V8", (3, "|", None, ("a",), {"a": (np.dtype("f4"), 100)}, 8, 1, 16)),  # past the end
        ("V8", (3, "|", (np.dtype("f4"), (2,)), ("a",), {"a": (np.dtype("f4"), 0)}, 8, 4, 0)),
        ("i4", (3, "<", None, None, None, 16, 4, 0)),  # another item size
        ("i4", (3, "<", None, None, None, -1, -1, 63)),  # object flags on an int
        ("M8", (4, "<", None, None, None, -1, -1, 0, (None, (b"xx", 1, 1, 1)))),  # no such unit
        ("f4", (4, "<", None, None, None, -1, -1, 0, (None, (b"ns", 1, 1, 1)))),  # a unit on f4
    ],
)
def test_inconsistent_states_are_refused(typestr: str, state: tuple[object, ...]) -> None:
    with pytest.raises(pickle.UnpicklingError, match="dtype"):
        loads_restricted(pickle.dumps([_Crafted(typestr, state)], protocol=2))


FUZZ = textwrap.dedent(
    """
    import gc, pickle, random, sys
    import numpy as np
    from berg_core.safe_npy import loads_restricted

    class Crafted:
        def __init__(self, typestr, state):
            self.typestr, self.state = typestr, state
        def __reduce__(self):
            return (np.dtype, (self.typestr, False, True), self.state)

    rng = random.Random(int(sys.argv[1]))
    kinds = ["f8", "V8", "i4", "O8", "V16", "U3", "M8", "S5", "b1"]
    fields = [None, {}, {"a": (np.dtype("f4"), 0)}, {"a": (np.dtype("O"), 0)},
              {"a": (np.dtype("f4"), 0), "b": (np.dtype("O"), 8)}, {"a": (np.dtype("f4"), 100)}]
    for i in range(3000):
        state = (rng.choice([3, 4]), rng.choice("<>|="),
                 rng.choice([None, (np.dtype("f4"), (2,)), (np.dtype("O"), (1,))]),
                 rng.choice([None, ("a",), ("a", "b"), ()]), rng.choice(fields),
                 rng.choice([-1, 0, 4, 8, 16]), rng.choice([-1, 1, 4, 8]),
                 rng.choice([0, 1, 16, 27, 63, 144]))
        if state[0] == 4:
            state += ((None, (rng.choice([b"ns", b"s", b"xx"]), rng.choice([1, 2]), 1, 1)),)
        try:
            loads_restricted(pickle.dumps([Crafted(rng.choice(kinds), state)], protocol=2))
        except pickle.UnpicklingError:
            pass
        if i % 200 == 0:
            gc.collect()
    gc.collect()
    print("survived")
    """
)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_dtype_states_never_corrupt_memory(seed: int) -> None:
    """In a child process: a crash there is a failure here, not a dead test run."""
    result = subprocess.run(
        [sys.executable, "-c", FUZZ, str(seed)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "survived"
