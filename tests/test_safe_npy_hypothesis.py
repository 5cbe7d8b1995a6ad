"""berg_core.safe_npy: property-based tests (hypothesis), and files written by numpy 1.x.

(a) Any nested structure of dicts, lists, tuples, strings, numbers, None and numpy arrays saved
with ``np.save`` loads through the safe loader equal to what ``np.load(allow_pickle=True)`` gives.
(b) Random mutations and truncations of valid files raise nothing but ModelLoadError, quickly.
"""

from __future__ import annotations

import pickle
import pickletools
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from berg_core import ModelLoadError, safe_npy
from berg_core.safe_npy import load_pickled_npy

MiB = 1 << 20

# -- numpy 1.x ---------------------------------------------------------------------------------

# np.save("f.npy", data) by numpy 1.26.4 (pickle protocol 3, numpy.core names, datetime dtype
# states whose metadata is {} where numpy 2 writes None), with
# data = {"dt": np.array(["2020-01-01T10", "2021-06-30T00"], dtype="M8[h]"),
#         "td": np.arange(3, dtype="m8[ms]"), "td2": np.array([5], dtype="m8[25s]"),
#         "s": np.datetime64("2020-01-01"), "dtype": np.dtype("M8[ns]"),
#         "be": np.array([1, 2], dtype=">M8[D]")}
_NUMPY1_DATETIME = bytes.fromhex(
    "934e554d5059010076007b276465736372273a20277c4f272c2027666f727472616e5f6f72646572273a2046616c"
    "73652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020"
    "20202020202020202020202020202020202020202020202020202020202020202020200a8003636e756d70792e63"
    "6f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71"
    "014b008571024301627103877104527105284b0129636e756d70790a64747970650a710658020000004f38710789"
    "88877108527109284b0358010000007c710a4e4e4e4affffffff4affffffff4b3f74710b62895d710c7d710d2858"
    "020000006474710e680068014b0085710f6803877110527111284b014b02857112680658020000004d3871138988"
    "877114527115284b0458010000003c71164e4e4e4affffffff4affffffff4b007d71172843016871184b014b014b"
    "0174711986711a74711b628943101ab006000000000040e3060000000000711c74711d6258020000007464711e68"
    "0068014b0085711f6803877120527121284b014b03857122680658020000006d3871238988877124527125284b04"
    "68164e4e4e4affffffff4affffffff4b007d71262843026d7371274b014b014b0174712886712974712a62894318"
    "000000000000000001000000000000000200000000000000712b74712c625803000000746432712d680068014b00"
    "85712e680387712f527130284b014b01857131680658020000006d3871328988877133527134284b0468164e4e4e"
    "4affffffff4affffffff4b007d71352843017371364b194b014b0174713786713874713962894308050000000000"
    "0000713a74713b62580100000073713c636e756d70792e636f72652e6d756c746961727261790a7363616c61720a"
    "713d680658020000004d38713e898887713f527140284b0468164e4e4e4affffffff4affffffff4b007d71412843"
    "014471424b014b014b01747143867144747145624308564700000000000071468671475271485805000000647479"
    "70657149680658020000004d38714a898887714b52714c284b0468164e4e4e4affffffff4affffffff4b007d714d"
    "2843026e73714e4b014b014b0174714f86715074715162580200000062657152680068014b008571536803877154"
    "527155284b014b02857156680658020000004d3871578988877158527159284b0458010000003e715a4e4e4e4aff"
    "ffffff4affffffff4b007d715b2868424b014b014b0174715c86715d74715e628943100000000000000001000000"
    "0000000002715f747160627561747161622e"
)


def test_datetime_arrays_written_by_numpy_1(tmp_path: Path) -> None:
    path = tmp_path / "numpy1.npy"
    path.write_bytes(_NUMPY1_DATETIME)
    # what numpy 1.x writes and numpy 2 does not: numpy.core names, {} as datetime metadata
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(_NUMPY1_DATETIME[128:])]
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    unit = ops.index(("SHORT_BINBYTES", b"h"))
    assert "EMPTY_DICT" in [name for name, _ in ops[unit - 4 : unit]]
    loaded = load_pickled_npy(path)
    reference = np.load(path, allow_pickle=True).item()
    expected = {
        "dt": np.array(["2020-01-01T10", "2021-06-30T00"], dtype="M8[h]"),
        "td": np.arange(3, dtype="m8[ms]"),
        "td2": np.array([5], dtype="m8[25s]"),
        "s": np.datetime64("2020-01-01"),
        "dtype": np.dtype("M8[ns]"),
        "be": np.array([1, 2], dtype=">M8[D]"),
    }
    assert list(loaded) == list(reference) == list(expected)
    for key, want in expected.items():
        got, ref = loaded[key], reference[key]
        if key == "dtype":
            assert got == ref == want and got.str == ref.str == want.str
            continue
        assert np.array_equal(got, want) and np.array_equal(ref, want), key
        assert got.dtype.str == ref.dtype.str, key  # numpy swaps ">M8[D]" to native: both do
        assert np.datetime_data(got.dtype) == np.datetime_data(want.dtype), key
    assert np.datetime_data(loaded["td2"].dtype) == ("s", 25)


def test_datetime_metadata_other_than_empty_is_refused() -> None:
    state = (4, "<", None, None, None, -1, -1, 0, ({"x": 1}, (b"h", 1, 1, 1)))
    payload = pickle.dumps(_Reduce(np.dtype, ("M8", False, True), state), protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="bad dtype state"):
        safe_npy.loads_restricted(payload)


class _Reduce:
    def __init__(self, func: Any, args: tuple[Any, ...], state: Any) -> None:
        self.value = (func, args, state)

    def __reduce__(self) -> Any:
        return self.value


# -- (a) round trip ----------------------------------------------------------------------------

_DTYPES = st.sampled_from(
    ["<f4", ">f8", "<i8", ">i2", "u1", "?", "<c8", "<f2", "<U3", "S2", "<M8[s]", "<m8[D]"]
).map(np.dtype) | st.just(np.dtype([("a", "<i4"), ("b", ">f8", (2,))]))
_ARRAYS = hnp.arrays(
    dtype=_DTYPES,
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | _ARRAYS
)
_KEYS = (
    st.text(max_size=8)
    | st.integers(-1000, 1000)
    | st.tuples(st.integers(0, 9), st.text(max_size=3))
)
_DATA = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


def _same(got: Any, want: Any) -> None:
    assert type(got) is type(want) or (isinstance(got, np.ndarray) and isinstance(want, np.ndarray))
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.dtype.str == want.dtype.str
        assert got.shape == want.shape and got.tobytes() == want.tobytes()
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            _same(got[key], want[key])
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for item, expected in zip(got, want, strict=True):
            _same(item, expected)
    else:
        assert got == want


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, protocol=st.sampled_from([2, 3, 4, 5]), mapped=st.booleans())
def test_round_trip_equals_np_load(
    tmp_path_factory: pytest.TempPathFactory, data: Any, protocol: int, mapped: bool
) -> None:
    path = tmp_path_factory.mktemp("rt") / "data.npy"
    holder = np.empty((), dtype=object)
    holder[()] = data
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(holder, stream, protocol=protocol)
    threshold = 16 if mapped else safe_npy.MAP_THRESHOLD
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(safe_npy, "MAP_THRESHOLD", threshold)
        loaded = load_pickled_npy(path)
    _same(loaded, np.load(path, allow_pickle=True).item())


# -- (b) fuzz ----------------------------------------------------------------------------------

_SEED = {
    "coef_": np.arange(24, dtype=np.float32).reshape(4, 6),
    "rois": {"V1v": np.array([1, 5, 9]), "names": ["a", "b"], "pair": (1, 2.5)},
    "keys": {1, 2, (3, "x")},
    "when": np.array(["2020-01-01"], dtype="M8[D]"),
    "record": np.zeros(2, dtype=[("a", "<i4"), ("b", ">f8", (2,))]),
    "objects": np.array([{"k": [1]}, "s"], dtype=object),
}
_VALID = {
    protocol: pickle.dumps(np.array(_SEED, dtype=object), protocol=protocol)
    for protocol in (2, 4, 5)
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    protocol=st.sampled_from([2, 4, 5]),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.floats(0, 1),
    insert=st.none() | st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)),
)
def test_mutated_files_raise_only_model_load_error(
    tmp_path_factory: pytest.TempPathFactory,
    protocol: int,
    edits: list[tuple[float, int]],
    cut: float | None,
    insert: tuple[float, bytes] | None,
) -> None:
    broken = bytearray(_VALID[protocol])
    for where, value in edits:
        broken[int(where * len(broken))] = value
    if insert is not None:
        at = int(insert[0] * len(broken))
        broken[at:at] = insert[1]
    if cut is not None:
        del broken[int(cut * len(broken)) :]
    path = tmp_path_factory.mktemp("fz") / "f.npy"
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        stream.write(broken)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        load_pickled_npy(path)
    except ModelLoadError:
        pass
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 8 * MiB, (elapsed, peak)
