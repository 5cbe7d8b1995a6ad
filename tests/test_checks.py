"""berg_core.checks: what a model reads from a file is checked before use."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from berg_core.checks import Location, require_array, require_indices, require_mapping
from berg_core.errors import ModelLoadError

WHERE = Location("f.npy", "metadata")["roi"]["V1"]


def test_location_names_file_and_key_path() -> None:
    assert str(WHERE) == "f.npy: metadata['roi']['V1']"
    assert str(Location("w.npy", "weights")[3]) == "w.npy: weights[3]"


def test_require_mapping() -> None:
    value = {"a": 1, "b": 2}
    assert require_mapping(value, WHERE, ("a",)) is value
    with pytest.raises(ModelLoadError, match=r"f\.npy: metadata\['roi'\]\['V1'\] is a list"):
        require_mapping([1], WHERE)
    with pytest.raises(ModelLoadError, match=r"lacks key\(s\) c, d; expected .* \(has: a, b\)"):
        require_mapping(value, WHERE, ("a", "c", "d"))


@pytest.mark.parametrize(
    ("value", "kwargs", "found", "expected"),
    [
        (np.ndarray, {"kind": "floating"}, "the class numpy.ndarray", "a floating-point array"),
        (1.5, {"kind": "floating"}, "is a float (1.5)", "a floating-point array"),
        (np.zeros(3, int), {"kind": "floating"}, "dtype int64", "a floating-point array"),
        (np.zeros(3, bool), {"kind": "numeric"}, "dtype bool", "a numeric"),
        (np.zeros(3, complex), {"kind": "numeric"}, "dtype complex128", "a numeric"),
        (np.zeros(()), {"kind": "floating", "ndim": 1}, "shape ()", "floating-point 1-D array"),
        (np.zeros((2, 3)), {"kind": "floating", "shape": (None, 4)}, "(2, 3)", "shape (n, 4)"),
        (np.zeros(3), {"kind": "floating", "shape": (4,)}, "shape (3,)", "shape (4,)"),
    ],
)
def test_require_array_refuses(value: object, kwargs: dict, found: str, expected: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        require_array(value, WHERE, **kwargs)
    message = str(info.value)
    assert message.startswith("f.npy: metadata['roi']['V1'] is ")
    got, wanted = message.split("; expected ", 1)
    assert found in got and expected in wanted


def test_require_array_reads_no_data(tmp_path) -> None:
    path = tmp_path / "big.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1000, 8))
    del mapped
    array = np.load(path, mmap_mode="r")
    assert require_array(array, WHERE, kind="floating", shape=(1000, 8)) is array


@given(
    hnp.arrays(
        dtype=st.one_of(
            hnp.integer_dtypes(),
            hnp.unsigned_integer_dtypes(),
            hnp.floating_dtypes(),
            hnp.boolean_dtypes(),
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6),
    ),
    st.integers(1, 50),
)
@settings(max_examples=200, deadline=None)
def test_require_indices_accepts_exactly_valid_index_arrays(array: np.ndarray, size: int) -> None:
    """Either the very same values come back as int64, or ModelLoadError: never a cast."""
    valid = (
        array.dtype.kind in "iu"
        and array.ndim == 1
        and all(0 <= int(v) < size for v in array.tolist())
    )
    if valid:
        result = require_indices(array, WHERE, size=size)
        assert result.dtype == np.int64
        assert result.tolist() == [int(v) for v in array.tolist()]
    else:
        with pytest.raises(ModelLoadError, match=r"^f\.npy: metadata\['roi'\]\['V1'\] is "):
            require_indices(array, WHERE, size=size)


def test_require_indices_messages() -> None:
    with pytest.raises(ModelLoadError, match=r"holding 10 at position 2; expected only vox"):
        require_indices(np.array([0, 9, 10, 10]), WHERE, size=10, what="voxels")
    with pytest.raises(ModelLoadError, match=r"dtype float64; expected an integer 1-D array of"):
        require_indices(np.array([1.0, 2.0]), WHERE, size=10)
    assert require_indices(np.zeros(0, np.uint8), WHERE, size=1).dtype == np.int64
