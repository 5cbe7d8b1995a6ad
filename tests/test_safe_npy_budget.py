"""berg_core.safe_npy's budget: crafted files of a few bytes that would take unbounded memory or
time are refused fast, naming the file and the byte of the opcode that would go over.

Each attack is built opcode by opcode; where it is cheap, ``pickle.loads`` (the trusted control)
shows that the payload really does what the test says (shares, cycles, collides).
"""

from __future__ import annotations

import json
import pickle
import re
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berg_core import ModelLoadError, safe_npy
from berg_core.safe_npy import in_memory, load_pickled_npy, loads_restricted

MiB = 1 << 20
P4 = b"\x80\x04"
_MERSENNE = (1 << 61) - 1  # hash(n) == hash(n + k * _MERSENNE) for every int


# -- building pickles --------------------------------------------------------------------------


def _glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _put(index: int) -> bytes:
    return b"r" + index.to_bytes(4, "little")


def _get(index: int) -> bytes:
    return b"j" + index.to_bytes(4, "little")


def _bytes(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


def _text(data: str) -> bytes:
    raw = data.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _npy(path: Path, payload: bytes) -> Path:
    """A ``.npy`` file whose pickle is *payload*."""
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        stream.write(payload)
    return path


def _refused(path: Path, pattern: str, seconds: float = 1.0, peak: int | None = 32 * MiB) -> str:
    """Load *path*: ModelLoadError matching *pattern*, naming the file and a byte, within
    *seconds*; then again under tracemalloc (slower): at most *peak* bytes allocated."""
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=pattern) as info:
        load_pickled_npy(path)
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert str(path) in message
    assert re.search(r"at byte \d+", message), message
    assert elapsed < seconds, f"{elapsed:.2f} s"
    if peak is not None:
        tracemalloc.start()
        try:
            with pytest.raises(ModelLoadError, match=pattern):
                load_pickled_npy(path)
            used = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert used < peak, f"{used / MiB:.1f} MiB"
    return message


def _offset(message: str) -> int:
    return int(re.search(r"at byte (\d+)", message).group(1))  # type: ignore[union-attr]


# -- shared substructure: the result is never expanded -----------------------------------------


def _shared_lists(levels: int) -> bytes:  # L[k+1] = [L[k], L[k]]
    return P4 + b"]q\x00" + b"](h\x00h\x00eq\x00" * levels + b"."


def _shared_tuples(levels: int) -> bytes:  # T[k+1] = (T[k], T[k])
    return P4 + b")q\x00" + b"h\x00h\x00\x86q\x00" * levels + b"."


def _shared_dicts(levels: int) -> bytes:  # D[k+1] = {1: D[k], 2: D[k]}
    return P4 + b"}q\x00" + b"}(K\x01h\x00K\x02h\x00uq\x00" * levels + b"."


def _shared_object_arrays(levels: int) -> bytes:  # A[k+1] = np.array([A[k], A[k]], dtype=object)
    head = (
        P4
        + _glob("numpy.core.multiarray", "_reconstruct")
        + b"q\x01"
        + _glob("numpy", "ndarray")
        + b"q\x02"
        + _glob("numpy", "dtype")
        + b"\x8c\x02O8\x89\x88\x87Rq\x03"
        + b"Nq\x00"
    )
    level = b"h\x01h\x02K\x00\x85C\x01b\x87R(K\x01K\x02\x85h\x03\x89](h\x00h\x00etbq\x00"
    return head + level * levels + b"."


@pytest.mark.parametrize(
    "build", [_shared_lists, _shared_tuples, _shared_dicts, _shared_object_arrays]
)
def test_exponential_sharing_is_refused_where_it_goes_over(
    tmp_path: Path, build: Callable[[int], bytes]
) -> None:
    path = _npy(tmp_path / "metadata_subject-01.npy", build(64))  # 2**64 values once expanded
    message = _refused(path, r"data expands to [\d,]+ values")
    assert "a shared value counts each time it appears" in message
    # the byte named is the opcode that made the value too large: the list/tuple/dict/array
    assert path.read_bytes()[_offset(message)] in b"e\x86ub"
    # control: pickle builds it in no time, as a DAG that any walk expands
    small = pickle.loads(build(4))
    assert small[0] is small[1] if not isinstance(small, dict) else small[1] is small[2]


def test_moderate_sharing_loads_and_stays_shared(tmp_path: Path) -> None:
    # a value shared a few times, as real data may do
    rois = np.arange(10)
    data = {"lh": {"V1v": rois, "all": [rois] * 50}, "rh": {"V1v": rois}}
    path = tmp_path / "m.npy"
    np.save(path, data)  # type: ignore[arg-type]
    loaded = load_pickled_npy(path)
    assert loaded["lh"]["V1v"] is loaded["rh"]["V1v"] is loaded["lh"]["all"][49]
    assert json.dumps(loaded, default=lambda a: a.tolist())  # a walker expands it: bounded
    copied = in_memory(loaded)
    assert copied["lh"]["V1v"] is copied["rh"]["V1v"] is copied["lh"]["all"][0]


def test_in_memory_keeps_sharing_and_cycles_and_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", 64)
    np.save(tmp_path / "w.npy", {"coef_": np.arange(100.0)})  # type: ignore[arg-type]
    mapped = load_pickled_npy(tmp_path / "w.npy")["coef_"]
    assert isinstance(mapped, np.memmap)
    # a DAG of 2**200 paths: copied in 200 steps, still shared
    node: Any = [mapped]
    for _ in range(200):
        node = [node, node]
    started = time.perf_counter()
    copied = in_memory(node)
    assert time.perf_counter() - started < 0.5
    leaf = copied
    while len(leaf) == 2:
        assert leaf[0] is leaf[1]
        leaf = leaf[0]
    assert type(leaf[0]) is np.ndarray and leaf[0].flags.writeable
    np.testing.assert_array_equal(leaf[0], np.arange(100.0))
    # a cycle is copied as a cycle, not a RecursionError
    loop: list[Any] = [mapped]
    loop.append(loop)
    looped = in_memory(loop)
    assert looped[1] is looped and type(looped[0]) is np.ndarray
    # OrderedDict and object arrays keep their types; mapped arrays inside them are copied
    objects = np.empty(2, dtype=object)
    objects[0], objects[1] = mapped, (mapped, 1)
    result = in_memory(OrderedDict(b=objects, a=(mapped,)))
    assert type(result) is OrderedDict and list(result) == ["b", "a"]
    assert result["b"].dtype == object and type(result["b"][0]) is np.ndarray
    assert result["b"][1][0] is result["b"][0] is result["a"][0]
    assert objects[0] is mapped  # the original is untouched


# -- cycles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"]q\x00h\x00a.", "list"),  # L.append(L)
        (b"]q\x00(K\x01h\x00e.", "list"),  # L.extend([1, L])
        (b"}q\x00K\x01h\x00s.", "dict"),  # D[1] = D
        (b"}q\x00(K\x01K\x02K\x03h\x00u.", "dict"),  # D.update({1: 2, 3: D})
        (_glob("collections", "OrderedDict") + b")Rq\x00K\x01h\x00s.", "OrderedDict"),
    ],
)
def test_a_container_that_contains_itself_is_refused(
    tmp_path: Path, payload: bytes, kind: str
) -> None:
    path = _npy(tmp_path / "c.npy", P4 + payload)
    message = _refused(path, f"refusing a {kind} that contains itself")
    assert path.read_bytes()[_offset(message)] in b"aesu"
    looped = pickle.loads(P4 + payload)  # control: pickle builds the cycle
    assert any(item is looped for item in (looped.values() if kind != "list" else looped))
    with pytest.raises(RecursionError):
        json.dumps(looped, check_circular=False)  # ... on which walkers overflow the stack


# -- object and structured arrays: numpy allocates shape x itemsize ----------------------------


class _Reduce:
    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self) -> Any:
        return self.value


def _array_state(shape: tuple[int, ...], dtype: np.dtype, raw: Any) -> bytes:
    """``_reconstruct(ndarray, ...)`` + BUILD with the state given (no array is allocated)."""
    stub = _Reduce(safe_npy._multiarray._reconstruct, (np.ndarray, (0,), b"b"))
    stub.value = (*stub.value, (1, shape, dtype, False, raw))
    return pickle.dumps(stub, protocol=4)


@pytest.mark.parametrize(
    ("dtype", "shape", "raw"),
    [
        # one object field in a 1 GiB item
        (
            np.dtype({"names": ["a"], "formats": ["O"], "offsets": [0], "itemsize": 1 << 30}),
            (1,),
            1,
        ),
        # an object field and 512 MiB of padding, 4 items
        (np.dtype([("a", "O"), ("pad", "V8", (1 << 26,))]), (4,), 4),
        # a subarray of 2**27 objects (1 GiB of pointers) per item
        (np.dtype(("O", (1 << 27,))), (1,), 1),
        (np.dtype([("a", "O", (1 << 14, 1 << 13))]), (1,), 1),
    ],
    ids=["padded-field", "padding-field", "subarray", "field-subarray"],
)
def test_small_files_declaring_huge_object_arrays_are_refused(
    tmp_path: Path, dtype: np.dtype, shape: tuple[int, ...], raw: int
) -> None:
    payload = _array_state(shape, dtype, [None] * raw)
    assert len(payload) < 1000
    path = _npy(tmp_path / "o.npy", payload)
    message = _refused(path, r"takes the loader past its budget", peak=8 * MiB)
    assert path.read_bytes()[_offset(message)] == ord("b")  # the BUILD that would allocate


def test_huge_shapes_with_small_payloads_are_corrupt(tmp_path: Path) -> None:
    record = np.dtype([("a", "<f8"), ("b", "V7")])
    for shape, dtype in [((1 << 40,), record), ((1 << 20, 1 << 20), np.dtype("f8"))]:
        path = _npy(tmp_path / "s.npy", _array_state(shape, dtype, b"\x00" * 16))
        _refused(path, r"needs \d+ bytes; the file holds 16")
    path = _npy(tmp_path / "d.npy", _array_state((1,) * 65, np.dtype("f8"), b"\x00" * 8))
    _refused(path, r"bad array shape a tuple of 65 items")


def test_dtypes_nested_too_deep_are_refused(tmp_path: Path) -> None:
    dtype = np.dtype("f8")
    for _ in range(120):
        dtype = np.dtype([("a", dtype)])
    path = _npy(tmp_path / "d.npy", pickle.dumps(dtype, protocol=4))
    _refused(path, "nested more than 100 levels deep")
    assert pickle.loads(path.read_bytes()[128:]) == dtype  # control: numpy builds it
    shallow = np.dtype("f8")
    for _ in range(20):
        shallow = np.dtype([("a", shallow), ("b", "<i2")])
    path = _npy(tmp_path / "ok.npy", pickle.dumps(shallow, protocol=4))
    assert load_pickled_npy(path) == shallow


# -- one payload rebuilt per reference ---------------------------------------------------------


def _repeat(setup: bytes, call: bytes, times: int) -> bytes:
    """*setup* (leaves its value in memo 0), then a list of *times* results of *call*."""
    return P4 + setup + _put(0) + b"(" + call * times + b"l."


_BYTEARRAY = _glob("builtins", "bytearray")
_ENCODE = _glob("_codecs", "encode")
_SET = _glob("builtins", "set")
_FROZENSET = _glob("builtins", "frozenset")


def _ints(n: int) -> bytes:
    return b"(" + b"".join(b"J" + i.to_bytes(4, "little") for i in range(n)) + b"l"


@pytest.mark.parametrize(
    ("setup", "call"),
    [
        (_bytes(bytes(1 << 16)), _BYTEARRAY + _get(0) + b"\x85R"),
        (_text("x" * (1 << 16)), _ENCODE + _get(0) + b"\x8c\x06latin1\x86R"),
        (_text("x" * (1 << 16)), _BYTEARRAY + _get(0) + b"\x8c\x06latin1\x86R"),
        (_ints(1 << 14), _SET + _get(0) + b"\x85R"),
        (_ints(1 << 14), _FROZENSET + _get(0) + b"\x85R"),
        # a 64 KiB in-memory array, and a 64 KiB void scalar, from the same bytes
        (
            _bytes(bytes(1 << 16)),
            _glob("numpy.core.multiarray", "_reconstruct")
            + _glob("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R(K\x01M\x00\x20\x85"
            + _glob("numpy", "dtype")
            + b"\x8c\x02f8\x89\x88\x87R\x89"
            + _get(0)
            + b"tb",
        ),
        (
            _bytes(bytes(1 << 16)),
            _glob("numpy.core.multiarray", "scalar")
            + _glob("numpy", "dtype")
            + b"\x8c\x06V65536\x89\x88\x87R"
            + _get(0)
            + b"\x86R",
        ),
        # an object array of 16,384 elements from the same list
        (
            _ints(1 << 14),
            _glob("numpy.core.multiarray", "_reconstruct")
            + _glob("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R(K\x01M\x00\x40\x85"
            + _glob("numpy", "dtype")
            + b"\x8c\x02O8\x89\x88\x87R\x89"
            + _get(0)
            + b"tb",
        ),
    ],
    ids=["bytearray", "encode", "bytearray-str", "set", "frozenset", "array", "scalar", "objects"],
)
def test_one_payload_rebuilt_per_reference_is_refused(
    tmp_path: Path, setup: bytes, call: bytes, request: pytest.FixtureRequest
) -> None:
    # memory is measured where it is cheap: sets of 100,000s of elements are slow to trace
    slow = request.node.callspec.id in ("set", "frozenset")
    peak = None if slow else 24 * MiB
    payload = _repeat(setup, call, 20_000)  # a few hundred KB; naively, 1 GB or more
    path = _npy(tmp_path / "r.npy", payload)
    message = _refused(path, r"takes the loader past its budget of [\d,]+ units", peak=peak)
    assert path.read_bytes()[_offset(message)] in b"Rb"
    # a handful of references to the same payload are fine
    few = loads_restricted(_repeat(setup, call, 3))
    assert len(few) == 3


def test_a_mapped_payload_backs_one_array_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", 64)
    array = (
        _glob("numpy.core.multiarray", "_reconstruct")
        + _glob("numpy", "ndarray")
        + b"K\x00\x85C\x01b\x87R(K\x01K\x10\x85"
        + _glob("numpy", "dtype")
        + b"\x8c\x02f8\x89\x88\x87R\x89"
        + _get(0)
        + b"tb"
    )
    path = _npy(tmp_path / "m.npy", _repeat(_bytes(bytes(128)), array, 1))
    assert isinstance(load_pickled_npy(path)[0], np.memmap)
    path = _npy(tmp_path / "m2.npy", _repeat(_bytes(bytes(128)), array, 2))
    _refused(path, r"refusing a second array on the payload at byte 1\d\d")


# -- keys whose hashes collide -----------------------------------------------------------------


def _colliding_ints(n: int) -> list[bytes]:
    return [_int(i * _MERSENNE) for i in range(n)]


def _colliding_complex(n: int) -> list[bytes]:
    # hash(complex(x, y)) == hash(x) + 1000003 * hash(y): 0 for x = 1000003 k, y = -k
    complex_ = _glob("builtins", "complex")
    return [
        complex_
        + b"G"
        + np.float64(1000003 * k).byteswap().tobytes()
        + b"G"
        + np.float64(-k).byteswap().tobytes()
        + b"\x86R"
        for k in range(2, n + 2)
    ]


def _colliding_tuples(n: int) -> list[bytes]:
    return [key + b"K\x07\x86" for key in _colliding_ints(n)]


def _dict_setitems(keys: list[bytes]) -> bytes:
    return b"}(" + b"".join(key + b"N" for key in keys) + b"u"


def _dict_setitem(keys: list[bytes]) -> bytes:
    return b"}" + b"".join(key + b"Ns" for key in keys)


def _dict_opcode(keys: list[bytes]) -> bytes:
    return b"(" + b"".join(key + b"N" for key in keys) + b"d"


def _set_additems(keys: list[bytes]) -> bytes:
    return b"\x8f(" + b"".join(keys) + b"\x90"


def _frozenset_opcode(keys: list[bytes]) -> bytes:
    return b"(" + b"".join(keys) + b"\x91"


def _set_call(keys: list[bytes]) -> bytes:
    return _SET + b"(" + b"".join(keys) + b"l\x85R"


def _ordered_dict(keys: list[bytes]) -> bytes:
    return _glob("collections", "OrderedDict") + b")R(" + b"".join(k + b"N" for k in keys) + b"u"


@pytest.mark.parametrize(
    "container",
    [
        _dict_setitems,
        _dict_setitem,
        _dict_opcode,
        _set_additems,
        _frozenset_opcode,
        _set_call,
        _ordered_dict,
    ],
)
@pytest.mark.parametrize("keys", [_colliding_ints, _colliding_complex, _colliding_tuples])
def test_colliding_keys_are_refused_in_linear_time(
    tmp_path: Path,
    container: Callable[[list[bytes]], bytes],
    keys: Callable[[int], list[bytes]],
) -> None:
    payload = P4 + container(keys(5_000)) + b"."  # pickle.loads: quadratic, ~0.5 s
    path = _npy(tmp_path / "h.npy", payload)
    message = _refused(
        path, r"refusing 9 distinct keys of one dict or set with the same hash", peak=None
    )
    assert "MAX_HASH_COLLISIONS = 8" in message
    # control: the keys are distinct and their hashes all equal
    sample = pickle.loads(P4 + container(keys(50)) + b".")
    assert len(sample) == 50 and len({hash(key) for key in sample}) == 1


def test_a_few_colliding_keys_load() -> None:
    assert loads_restricted(P4 + _dict_setitems(_colliding_ints(8)) + b".") == dict.fromkeys(
        [i * _MERSENNE for i in range(8)]
    )
    mixed = set([-1, -2, 1, 1.0, True])  # one key for 1, 1.0, True; hash(-1) == hash(-2)
    assert loads_restricted(pickle.dumps(mixed)) == {-1, -2, 1}


# -- ints --------------------------------------------------------------------------------------


def test_ints_longer_than_the_limit_are_refused(tmp_path: Path) -> None:
    limit = safe_npy.MAX_INT_BYTES
    value = 1 << (8 * limit - 2)
    assert loads_restricted(pickle.dumps(value, protocol=4)) == value
    path = _npy(tmp_path / "i.npy", pickle.dumps([1 << (8 * limit + 8)], protocol=4))
    message = _refused(path, rf"refusing an int of {limit + 2:,} bytes")
    assert path.read_bytes()[_offset(message)] == 0x8B  # LONG4
    assert len(str(value)) < 4300  # what Python turns into text


# -- the budget grows with the file, and legitimate files stay well inside it -------------------


def test_real_data_spends_a_fraction_of_the_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = {
        "fmri": {f"roi{i}": rng.integers(0, 10**5, 300) for i in range(200)},
        "small": [rng.standard_normal(1000).astype(np.float32) for _ in range(100)],
        "sets": [set(range(i, i + 100)) for i in range(50)],
        "names": {f"k{i}": (i, float(i), str(i)) for i in range(5000)},
    }
    for protocol in (2, 4, 5):
        payload = pickle.dumps(data, protocol=protocol)
        machine = safe_npy._Machine(payload, 0, len(payload), None)
        machine.run()
        assert machine.spent < 2 * len(payload), (protocol, machine.spent, len(payload))


def test_the_budget_follows_the_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    data = [np.zeros(1000) for _ in range(4)]  # 32 KB of array data, built in memory
    payload = pickle.dumps(data, protocol=4)
    monkeypatch.setattr(safe_npy, "BUDGET_FLOOR", 0)
    monkeypatch.setattr(safe_npy, "BUDGET_PER_BYTE", 1)
    loads_restricted(payload)  # each array is charged its bytes, read just before
    monkeypatch.setattr(safe_npy, "BUDGET_PER_BYTE", 0)
    monkeypatch.setattr(safe_npy, "BUDGET_FLOOR", 10_000)  # less than the first array
    with pytest.raises(pickle.UnpicklingError, match="past its budget of 10,000 units"):
        loads_restricted(payload)
