"""berg_core.safe_npy's pickle machine: same values as numpy, memory-mapped arrays, crafted files.

``np.load(path, allow_pickle=True)`` is the trusted control throughout: on data it must agree
value by value and dtype by dtype; on crafted files it shows that the file really does something
(runs code, builds a dtype that reads outside its memory) that the restricted loader refuses.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tracemalloc
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berg_core import ModelLoadError, safe_npy
from berg_core.safe_npy import (
    ALLOWED_GLOBALS,
    ESTIMATORS,
    load_pickled_npy,
    loads_restricted,
    read_rows,
)

MiB = 1 << 20


# -- helpers -----------------------------------------------------------------------------------


def _write_npy(path: Path, obj: Any, protocol: int) -> Path:
    """What ``np.save(path, obj)`` writes, with the pickle protocol chosen (np.save uses 4)."""
    holder = np.empty((), dtype=object)
    holder[()] = obj
    with open(path, "wb") as stream:
        header = {"descr": "|O", "fortran_order": False, "shape": ()}
        np.lib.format.write_array_header_1_0(stream, header)
        pickle.dump(holder, stream, protocol=protocol)
    return path


def _write_raw_npy(path: Path, payload: bytes) -> Path:
    """A ``.npy`` file whose pickle is *payload* (crafted by hand)."""
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        stream.write(payload)
    return path


def _assert_same(got: Any, want: Any, where: str = "data") -> None:
    """*got* equals *want* value by value, type by type, dtype by dtype and layout by layout."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype and got.dtype.str == want.dtype.str, where
        assert got.shape == want.shape, where
        assert got.flags.c_contiguous == want.flags.c_contiguous, where
        assert got.flags.f_contiguous == want.flags.f_contiguous, where
        if want.dtype.hasobject:
            for index in np.ndindex(want.shape):
                _assert_same(got[index], want[index], f"{where}[{index}]")
        else:
            assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, np.generic):
        assert type(got) is type(want), where
        assert got.dtype == want.dtype and got.dtype.str == want.dtype.str, where
        assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, np.dtype):
        assert isinstance(got, np.dtype) and got == want and got.str == want.str, where
        assert got.flags == want.flags and got.alignment == want.alignment, where
    elif isinstance(want, dict):
        assert type(got) is type(want), where
        assert list(got) == list(want), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, list | tuple):
        assert type(got) is type(want) and len(got) == len(want), where
        for index, (item, expected) in enumerate(zip(got, want, strict=True)):
            _assert_same(item, expected, f"{where}[{index}]")
    elif isinstance(want, float) and want != want:
        assert type(got) is float and got != got, where
    else:
        assert type(got) is type(want) and got == want, where


def _arrays(value: Any, where: str = "data") -> dict[str, np.ndarray]:
    """Every non-object array in *value*, by where it is."""
    found: dict[str, np.ndarray] = {}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            for index in np.ndindex(value.shape):
                found.update(_arrays(value[index], f"{where}[{index}]"))
        else:
            found[where] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            found.update(_arrays(item, f"{where}[{key!r}]"))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.update(_arrays(item, f"{where}[{index}]"))
    return found


def _sample() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    objects = np.empty(3, dtype=object)
    objects[:] = [{"nested": np.arange(3)}, "text", [1, (2.5, None)]]
    record = np.dtype([("id", "<i4"), ("xy", ">f8", (2,)), ("name", "U3")])
    aligned = np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"]}, align=True)
    return {
        "float32": rng.standard_normal((40, 30)).astype(np.float32),
        "float64": rng.standard_normal(257),
        "int64": rng.integers(-(2**62), 2**62, size=(5, 6, 7)),
        "bool": rng.random(300) > 0.5,
        "str": np.array(["V1v", "FFA-2", "ümlaut", ""]),
        "bytes_array": np.array([b"ab", b"c"]),
        "object": objects,
        "zero_d": np.array(3.5),
        "zero_d_int": np.array(7, dtype=np.int16),
        "fortran": np.asfortranarray(rng.standard_normal((16, 9))),
        "transposed": np.arange(240.0).reshape(4, 6, 10).transpose(1, 0, 2),
        "strided": np.arange(100, dtype=np.int32)[::3],
        "empty": np.array([]),
        "empty_2d": np.zeros((0, 250), dtype=np.float32),
        "big_endian": np.arange(50, dtype=">f8"),
        "big_endian_int": np.arange(20, dtype=">i4").reshape(4, 5),
        "structured": np.array([(1, (2.0, 3.0), "a"), (4, (5.0, 6.0), "bcd")], dtype=record),
        "aligned_struct": np.zeros(4, dtype=aligned),
        "void": np.frombuffer(bytes(range(24)), dtype="V6"),
        "datetime": np.array(["2020-01-01T10", "2021-06-30T00"], dtype="M8[h]"),
        "timedelta": np.arange(3, dtype="m8[ms]"),
        "complex": (rng.standard_normal(8) + 1j).astype(np.complex64),
        "float16": np.arange(12, dtype=np.float16),
        "nan": np.array([np.nan, np.inf, -0.0]),
        "scalars": [
            np.float32(1.5),
            np.float64(-2.25),
            np.int64(-(2**40)),
            np.uint8(200),
            np.bool_(True),
            np.str_("hé"),
            np.bytes_(b"xy"),
            np.complex128(1 - 2j),
            np.datetime64("2020-01-01"),
            np.void(b"\x01\x02"),
        ],
        "dtypes": (np.dtype("float32"), np.dtype(">i2"), record, np.dtype("M8[ns]")),
        "nested": {"fmri": {"lh_fsaverage_rois": {"V1v": np.array([1, 5, 9])}}},
        "ordered": OrderedDict(b=1, a=[2]),
        "set": {1, "x", (2, 3)},
        "frozenset": frozenset({1.5, b"z"}),
        "bytes": b"\x00\xff" * 3,
        "empty_bytes": b"",
        "bytearray": bytearray(b"abc"),
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31, 2**64, -(2**100)],
        "floats": [0.0, -1.5, 1e300, float("nan")],
        "text": ["", "a", "ü" * 300, "x" * 70000],
        "flags": (True, False, None),
        "complex_py": 1 + 2j,
        "slice": slice(1, None, 2),
        "range": range(2, 10, 3),
        "shared": [np.arange(2)] * 2,  # the same array twice: memo
    }


# -- equivalence with np.load ------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [safe_npy.MAP_THRESHOLD, 64], ids=["in-memory", "mapped"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_same_values_as_numpy_for_every_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int, threshold: int
) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", threshold)
    data = _sample()
    path = _write_npy(tmp_path / f"p{protocol}.npy", data, protocol)
    reference = np.load(path, allow_pickle=True).item()
    loaded = load_pickled_npy(path)
    _assert_same(loaded, reference)
    assert loaded["shared"][0] is loaded["shared"][1]
    mapped = {where for where, array in _arrays(loaded).items() if isinstance(array, np.memmap)}
    if threshold == 64 and protocol >= 3:
        # every payload of 64 bytes or more stays in the file (protocol 2 has no bytes opcodes),
        # except big-endian arrays before protocol 5: numpy swaps them to native when unpickling
        assert "data['float32']" in mapped and "data['transposed']" in mapped
        swapped = {"data['big_endian']", "data['big_endian_int']"} if protocol < 5 else set()
        for where, array in _arrays(loaded).items():
            assert (where in mapped) == (array.nbytes >= 64 and where not in swapped), where
            if where in mapped:
                assert not array.flags.writeable
                assert Path(array.filename).samefile(path)  # type: ignore[attr-defined]
    else:
        assert not mapped
    # in-memory arrays behave as numpy's (writable, same flags)
    for where, array in _arrays(loaded).items():
        if where not in mapped:
            assert array.flags.writeable == _arrays(reference)[where].flags.writeable, where
    # and the same through loads_restricted (always in memory)
    _assert_same(loads_restricted(pickle.dumps(data, protocol=protocol)), reference)


def test_np_save_dict_of_installed_numpy(tmp_path: Path) -> None:
    data = _sample()
    path = tmp_path / "weights.npy"
    np.save(path, data)  # type: ignore[arg-type]
    _assert_same(load_pickled_npy(path), np.load(path, allow_pickle=True).item())


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_top_level_values_that_are_not_dicts(protocol: int) -> None:
    for value in (np.arange(4.0), np.float32(2), np.dtype("<U2"), [np.zeros(2)], "s", 3, None):
        _assert_same(loads_restricted(pickle.dumps(value, protocol=protocol)), value)


# -- memory mapping ----------------------------------------------------------------------------


def _traced_peak(function: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_arrays_are_mapped_not_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((4096, 1024), dtype=np.float32)  # 16 MiB
    path = tmp_path / "weights.npy"
    np.save(path, {"reg": {"coef_": coef, "intercept_": np.arange(4096.0)}})  # type: ignore[arg-type]

    loaded, peak = _traced_peak(lambda: load_pickled_npy(path))
    assert peak < MiB  # nothing of the 16 MiB was read into memory
    mapped = loaded["reg"]["coef_"]
    assert isinstance(mapped, np.memmap) and mapped.mode == "r" and not mapped.flags.writeable
    assert mapped.offset == path.read_bytes().index(coef.tobytes())
    np.testing.assert_array_equal(mapped, coef)
    assert not isinstance(loaded["reg"]["intercept_"], np.memmap)  # 32 KiB: in memory
    with pytest.raises(ValueError, match="read-only"):
        mapped[0, 0] = 1.0

    rows = np.array([3, 700, 4000])
    selected, peak = _traced_peak(lambda: mapped[rows])
    assert peak < 64 * 1024 and selected.flags.writeable
    np.testing.assert_array_equal(selected, coef[rows])

    # control: numpy's own loader needs the whole payload, and more, in memory
    _, peak = _traced_peak(lambda: np.load(path, allow_pickle=True).item())
    assert peak > coef.nbytes


def test_read_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", 64)
    coef = np.arange(600.0, dtype=np.float32).reshape(100, 6)
    np.save(tmp_path / "w.npy", {"coef_": coef})  # type: ignore[arg-type]
    mapped = load_pickled_npy(tmp_path / "w.npy")["coef_"]
    assert isinstance(mapped, np.memmap)
    rows = np.array([0, 5, 89])
    for source, expected in ((mapped, coef), (mapped[10:], coef[10:]), (coef, coef)):
        selected = read_rows(source, rows)
        assert type(selected) is np.ndarray and selected.flags.writeable
        np.testing.assert_array_equal(selected, expected[rows])
    assert read_rows(mapped, [3]).shape == (1, 6)
    with pytest.raises(IndexError):
        read_rows(mapped, [100])
    np.testing.assert_array_equal(read_rows(mapped, [7]), coef[[7]])  # advice was restored


def test_plain_npy_arrays(tmp_path: Path) -> None:
    big = np.arange(MiB // 2, dtype=np.float32).reshape(512, -1)  # 2 MiB
    np.save(tmp_path / "big.npy", big)
    loaded = load_pickled_npy(tmp_path / "big.npy")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, big)
    np.save(tmp_path / "small.npy", big[:2])
    small = load_pickled_npy(tmp_path / "small.npy")
    assert not isinstance(small, np.memmap) and small.flags.writeable


def test_readout_uses_mapped_weights_without_copies_or_warnings(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from berg_core.torchkit.readout import LinearReadout

    rng = np.random.default_rng(1)
    k, dim, n = 8, 40_000, 3_000  # components 1.2 MiB, coef 94 KiB
    scaler = {
        "scale_": rng.random(dim).astype(np.float32) + 0.5,
        "mean_": rng.standard_normal(dim).astype(np.float32),
        "var_": np.ones(dim, np.float32),
        "n_features_in_": dim,
        "n_samples_seen_": 10,
    }
    pca = {
        "components_": rng.standard_normal((k, dim)).astype(np.float32),
        "explained_variance_": np.ones(k),
        "explained_variance_ratio_": np.ones(k),
        "singular_values_": np.ones(k),
        "mean_": rng.standard_normal(dim).astype(np.float32),
        "n_components_": k,
        "n_samples_": 10,
        "noise_variance_": 0.0,
        "n_features_in_": dim,
    }
    reg = {
        "coef_": rng.standard_normal((n, k)).astype(np.float32),
        "intercept_": rng.standard_normal(n).astype(np.float32),
        "n_features_in_": k,
    }
    path = tmp_path / "w.npy"
    np.save(path, {"scaler": scaler, "pca": pca, "reg": reg})  # type: ignore[arg-type]
    mapped = load_pickled_npy(path)
    assert isinstance(mapped["pca"]["components_"], np.memmap)
    rows = np.array([0, 17, 2999])
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning would fail here
        readout = LinearReadout.from_params(
            mapped["scaler"], mapped["pca"], {"a": (mapped["reg"], rows)}, cpu
        )
    assert readout.components.data_ptr() == mapped["pca"]["components_"].ctypes.data
    reference = LinearReadout.from_params(scaler, pca, {"a": (reg, rows)}, cpu)
    features = torch.from_numpy(rng.standard_normal((2, dim)).astype(np.float32))
    torch.testing.assert_close(readout(features.clone())[0], reference(features.clone())[0])


def test_readout_leaves_torchs_warning_for_the_users_own_arrays(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # torch warns about non-writable arrays once per process: in a fresh one, the readout must
    # not use up that warning
    script = """if True:
        import warnings, numpy as np, torch
        from berg_core.torchkit.readout import _tensor
        array = np.ones(3)
        array.flags.writeable = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _tensor(array, torch.device("cpu"))
            assert not caught, caught
            torch.from_numpy(array)
        assert any("not writable" in str(w.message) for w in caught), caught
        """
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)


# -- crafted pickles: code execution and friends -----------------------------------------------


class _Reduce:
    """Pickles as ``func(*args)`` followed by BUILD(state) when *state* is given."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self) -> Any:
        return self.value


def test_a_dtype_field_outside_its_item_is_refused(tmp_path: Path) -> None:
    # numpy.dtype is allowed, and dtype.__setstate__ trusts the state it is given
    state = (3, "|", None, ("a",), {"a": (np.dtype("f8"), 4096)}, 4, 1, 16)
    path = _write_npy(tmp_path / "d.npy", _Reduce(np.dtype, ("V4", False, True), state), 4)
    with pytest.raises(ModelLoadError, match="inconsistent dtype"):
        load_pickled_npy(path)
    # control: numpy builds a 4-byte dtype whose field reads 8 bytes 4 KiB past each item
    dtype = np.load(path, allow_pickle=True).item()
    assert dtype.itemsize == 4 and dtype.fields["a"][1] == 4096


def test_an_object_field_hidden_from_the_dtype_flags_is_refused(tmp_path: Path) -> None:
    # flags 0: numpy would take raw bytes from the file as PyObject pointers
    state = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)
    path = _write_npy(tmp_path / "o.npy", _Reduce(np.dtype, ("V8", False, True), state), 4)
    with pytest.raises(ModelLoadError, match="inconsistent dtype state"):
        load_pickled_npy(path)
    dtype = np.load(path, allow_pickle=True).item()  # control: accepted, objects unflagged
    assert dtype.fields["a"][0] == np.dtype("O") and not dtype.hasobject


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # allowed globals that are values only, or called with arguments they do not take
        (_Reduce(np.ndarray, ((2,), "f8", b"\x00" * 16)), r"refusing to call numpy\.ndarray"),
        (_Reduce(bytearray, (2**40,)), r"refusing to call builtins\.bytearray\(int\)"),
        (_Reduce(bytes, (2**40,)), r"refusing to call builtins\.bytes\(int\)"),
        (_Reduce(np.dtype, ({"names": ["a"], "formats": ["O"]},)), r"numpy\.dtype\(dict\)"),
        (_Reduce(OrderedDict, ([("a", 1)],)), r"collections\.OrderedDict\(list\)"),
        (_Reduce(complex, ("1+2j",)), r"builtins\.complex\(str\)"),
        (_Reduce(np.dtypes.Float64DType, ()), r"refusing to call numpy\.dtypes\.Float64DType"),
    ],
)
def test_allowed_globals_with_malicious_arguments_are_refused(
    tmp_path: Path, payload: Any, message: str
) -> None:
    path = _write_npy(tmp_path / "m.npy", {"payload": payload}, 4)
    with pytest.raises(ModelLoadError, match=message):
        load_pickled_npy(path)
    with pytest.raises(pickle.UnpicklingError, match=message):
        loads_restricted(pickle.dumps(payload, protocol=2))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"cnumpy\nndarray\nK\x02\x85\x8c\x02f8\x86\x81.", r"instantiate numpy\.ndarray"),
        (b"c_codecs\nencode\n\x8c\x01x\x85\x81.", r"instantiate _codecs\.encode"),
        (b"cpathlib\nPath\n\x8c\x0b/etc/passwd\x85\x81.", r"refusing to load pathlib\.Path"),
        (b"cposix\nsystem\n\x8c\x04true\x85\x81.", r"refusing to load posix\.system"),
        (b"cbuiltins\nset\n]K\x01a\x85\x81.", r"refusing to call builtins\.set\(list\)"),
    ],
)
def test_newobj_only_for_allowed_classes(tmp_path: Path, payload: bytes, message: str) -> None:
    path = _write_raw_npy(tmp_path / "n.npy", b"\x80\x04" + payload)
    with pytest.raises(ModelLoadError, match=message):
        load_pickled_npy(path)


def test_newobj_of_value_classes() -> None:
    assert loads_restricted(b"\x80\x04cbuiltins\ncomplex\nK\x01K\x02\x86\x81.") == 1 + 2j
    assert loads_restricted(b"\x80\x04cbuiltins\nset\n)\x81.") == set()
    assert loads_restricted(b"\x80\x04ccollections\nOrderedDict\n)\x81.") == OrderedDict()


def test_codecs_encode_only_encodes_latin1(tmp_path: Path) -> None:
    import _codecs

    path = _write_npy(tmp_path / "c.npy", _Reduce(_codecs.encode, ("abc", "rot13")), 4)
    with pytest.raises(ModelLoadError, match=r"refusing to call _codecs\.encode"):
        load_pickled_npy(path)
    assert np.load(path, allow_pickle=True).item() == "nop"  # control: any codec runs


def test_reduce_of_a_reconstruct_on_another_class_is_refused() -> None:
    payload = _Reduce(safe_npy._multiarray._reconstruct, (np.dtype, (0,), b"b"))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to call numpy\._core"):
        loads_restricted(pickle.dumps(payload, protocol=4))


def test_every_allowed_global_has_a_handler_or_is_a_value() -> None:
    assert ("numpy", "ndarray") in ALLOWED_GLOBALS and ("builtins", "bytes") in ALLOWED_GLOBALS
    for module, name in ALLOWED_GLOBALS:
        payload = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b"."
        if (module, name) in ESTIMATORS:  # instantiated as data only, never a value
            with pytest.raises(pickle.UnpicklingError, match="as a value"):
                loads_restricted(payload)
        else:
            assert loads_restricted(payload) is not None


@pytest.mark.parametrize(
    ("payload", "opcode"),
    [
        (b"\x80\x02(cos\nsystem\nVecho\no.", "refusing to load os.system"),  # OBJ, refused first
        (b"\x80\x02(ios\nsystem\n.", "INST"),
        (b"\x80\x02\x82\x01.", "EXT1"),
        (b"\x80\x05\x97.", "NEXT_BUFFER"),
        (b"\x80\x02N0.", "POP"),
        (b"\x80\x02N2.", "DUP"),
        (b"\x80\x02I1\n.", "INT"),
        (b"\x80\x02U\x01a.", "SHORT_BINSTRING"),
        (b"\x80\x04cbuiltins\ncomplex\n)}\x92.", "NEWOBJ_EX"),
        (b"\x80\x02N}b.", "refusing BUILD on a NoneType"),
        (b"\x80\x02]}b.", "refusing BUILD on a list"),  # pickle would __dict__.update
        (b"\x80\x02NNR.", "refusing to call a NoneType"),
        (b"\x80\x02K\x01K\x02\x93.", "STACK_GLOBAL on non-strings"),
        (b"\x80\x02\x8c\x08builtins\x8c\x04eval\x93.", "refusing to load builtins.eval"),
    ],
)
def test_other_opcodes_are_refused(payload: bytes, opcode: str) -> None:
    with pytest.raises(pickle.UnpicklingError, match=opcode):
        loads_restricted(payload)


# -- inconsistent and truncated arrays ---------------------------------------------------------


def _array_pickle(shape: tuple[int, ...], dtype: str, raw: bytes, protocol: int = 4) -> bytes:
    """A pickle of ``_reconstruct(ndarray, ...)`` + BUILD with a state numpy would not write."""
    return pickle.dumps(
        _Reduce(
            safe_npy._multiarray._reconstruct,
            (np.ndarray, (0,), b"b"),
            (1, shape, np.dtype(dtype), False, raw),
        ),
        protocol=protocol,
    )


@pytest.mark.parametrize("threshold", [safe_npy.MAP_THRESHOLD, 16], ids=["in-memory", "mapped"])
def test_array_state_with_inconsistent_sizes_is_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", threshold)
    for shape, raw in [((1000,), b"\x00" * 64), ((2,), b"\x00" * 64), ((4, 0), b"\x00" * 32)]:
        path = _write_raw_npy(tmp_path / "a.npy", _array_pickle(shape, "f8", raw))
        with pytest.raises(ModelLoadError, match=r"corrupt.*needs \d+ bytes; the file holds"):
            load_pickled_npy(path)
    # the protocol-5 path checks the same
    frombuffer = _Reduce(safe_npy._numeric._frombuffer, (bytearray(64), np.dtype("f4"), (99,), "C"))
    path = _write_raw_npy(tmp_path / "f.npy", pickle.dumps(frombuffer, protocol=5))
    with pytest.raises(ModelLoadError, match=r"needs 396 bytes; the file holds 64"):
        load_pickled_npy(path)
    # an object array whose state is raw bytes (numpy would read pointers) is refused
    path = _write_raw_npy(tmp_path / "o.npy", _array_pickle((2,), "O", b"\x00" * 16))
    with pytest.raises(ModelLoadError, match="expected a list of 2 objects"):
        load_pickled_npy(path)


def test_a_payload_running_past_the_end_of_the_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, {"coef_": np.zeros((600, 500), np.float32)})  # type: ignore[arg-type]
    path.write_bytes(path.read_bytes()[:-1000])  # the payload is the end of the file
    with pytest.raises(ModelLoadError, match=r"truncated pickle: 1200000 bytes needed"):
        load_pickled_npy(path)


def test_every_truncation_is_a_model_load_error(tmp_path: Path) -> None:
    data = {"a": np.arange(5.0), "b": [1, "x"], "c": np.float32(2), "d": {"e": b"zz"}}
    whole = pickle.dumps(np.array(data, dtype=object), protocol=4)
    for cut in range(len(whole)):
        path = _write_raw_npy(tmp_path / "t.npy", whole[:cut])
        with pytest.raises(ModelLoadError, match=r"corrupt|truncated"):
            load_pickled_npy(path)


def test_random_corruption_never_escapes_as_another_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_npy, "MAP_THRESHOLD", 32)
    rng = np.random.default_rng(3)
    data = {"a": np.arange(40.0).reshape(5, 8), "b": [1, "x", (2, None)], "s": np.float32(2)}
    for protocol in (2, 4, 5):
        whole = bytearray(pickle.dumps(np.array(data, dtype=object), protocol=protocol))
        for _ in range(300):
            broken = bytearray(whole)
            for index in rng.integers(0, len(broken), size=rng.integers(1, 4)):
                broken[index] = rng.integers(0, 256)
            path = _write_raw_npy(tmp_path / "r.npy", bytes(broken))
            try:
                load_pickled_npy(path)
            except ModelLoadError:
                pass


# -- nesting -----------------------------------------------------------------------------------


def _deep_lists(depth: int) -> bytes:
    # [[[...]]] built with a constant stack: new list, append the previous one (from the memo)
    return b"\x80\x02]q\x00" + b"]h\x00aq\x00" * depth + b"."


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = _write_raw_npy(tmp_path / "deep.npy", _deep_lists(100_000))
    with pytest.raises(ModelLoadError, match="nested more than 100 levels deep"):
        load_pickled_npy(path)
    deep = np.load(path, allow_pickle=True)  # control: numpy builds it, and then...
    with pytest.raises(RecursionError):
        repr(deep)  # ... code that walks it overflows the stack
    for payload in (
        b"\x80\x02N" + b"\x85" * 1000 + b".",  # tuple in tuple in tuple ...
        b"\x80\x02" + b"(" * 1000 + b".",  # MARK in MARK ...
        b"\x80\x02" + b"}q\x00" + b"}K\x00h\x00sq\x00" * 1000 + b".",  # dicts
    ):
        with pytest.raises(pickle.UnpicklingError, match="nested more than 100 levels deep"):
            loads_restricted(payload)
    assert len(str(loads_restricted(_deep_lists(99)))) == 2 * 100  # 100 levels are fine


def test_a_container_cannot_grow_after_it_was_put_in_another() -> None:
    # L0.append(L1) while L1 is empty, then L1.append(L2): depth tracking must not be fooled
    payload = b"\x80\x02]q\x00]q\x01ah\x01]q\x02a."
    with pytest.raises(pickle.UnpicklingError, match="container already in use"):
        loads_restricted(payload)
    assert pickle.loads(payload) == [[]]  # control: pickle allows it (and returns L1, mutated)


def test_a_dtype_cannot_change_after_an_array_used_it() -> None:
    # an array of dtype V4 is built, then BUILD gives the dtype a 400-byte item: numpy would read
    # 400 bytes from the array's 4-byte buffer
    payload = (
        b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93"
        b"\x8c\x02V4\x89\x88\x87Rq\x01"  # dtype("V4", False, True), memo 1
        b"\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93"
        b"\x8c\x05numpy\x8c\x07ndarray\x93K\x00\x85C\x01b\x87R"  # _reconstruct(ndarray,(0,),b"b")
        b"(K\x01K\x01\x85h\x01\x89C\x04\x00\x00\x00\x00tb"  # BUILD: (1,) array, 4 bytes
        b"h\x01(K\x03\x8c\x01|NNNM\x90\x01K\x01K\x00tb"  # BUILD on the dtype: elsize 400
        b"\x86."
    )
    with pytest.raises(pickle.UnpicklingError, match="dtype already in use"):
        loads_restricted(payload)
    array, _ = pickle.loads(payload)  # control: the array now spans 400 bytes of a 4-byte buffer
    assert array.nbytes == 400
