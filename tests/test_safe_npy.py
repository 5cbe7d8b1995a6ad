"""berg_core.safe_npy: the reference toolkit's pickled .npy dicts, read without running code."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from berg_core import ModelLoadError
from berg_core.safe_npy import load_pickled_npy, loads_restricted


def test_round_trip_of_a_reference_style_dict(tmp_path: Path) -> None:
    data = {
        "fmri": {
            "lh_ncsnr": np.linspace(0, 1, 7, dtype=np.float32),
            "lh_fsaverage_rois": {
                "V1v": np.array([1, 5, 9], dtype=np.int64),
                "FFA-2": np.array([]),
            },
        },
        "encoding_models": {"train_img_num": np.arange(12).reshape(3, 4)},
        "names": ["a", "b"],
        "pair": (1, 2.5),
        "text": "hello",
        "flag": True,
        "none": None,
        "scalar": np.float64(2.5),
        "ints": {1, 2},
        "ordered": OrderedDict(b=1, a=2),
        "bytes": b"\x00\x01",
        "complex": np.complex128(1 + 2j),
        "big_endian": np.arange(3, dtype=">i4"),
        "strings": np.array(["x", "yz"]),
    }
    path = tmp_path / "metadata_subject-01.npy"
    np.save(path, data)  # type: ignore[arg-type]  # exactly what the reference does
    loaded = load_pickled_npy(path)
    reference = np.load(path, allow_pickle=True).item()
    assert isinstance(loaded, dict)
    assert loaded.keys() == data.keys() == reference.keys()
    np.testing.assert_array_equal(loaded["fmri"]["lh_ncsnr"], data["fmri"]["lh_ncsnr"])
    assert loaded["fmri"]["lh_ncsnr"].dtype == np.float32
    rois = loaded["fmri"]["lh_fsaverage_rois"]
    np.testing.assert_array_equal(rois["V1v"], [1, 5, 9])
    assert rois["V1v"].dtype == np.int64
    assert rois["FFA-2"].shape == (0,)
    np.testing.assert_array_equal(
        loaded["encoding_models"]["train_img_num"], np.arange(12).reshape(3, 4)
    )
    for key in ("names", "pair", "text", "flag", "none", "scalar", "ints", "bytes", "complex"):
        assert loaded[key] == data[key]
    assert list(loaded["ordered"].items()) == [("b", 1), ("a", 2)]
    # same array as numpy's own (unsafe) loader gives
    assert loaded["big_endian"].dtype == reference["big_endian"].dtype
    np.testing.assert_array_equal(loaded["big_endian"], [0, 1, 2])
    np.testing.assert_array_equal(loaded["strings"], ["x", "yz"])


def test_plain_arrays_load_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    loaded = load_pickled_npy(str(path))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, np.arange(6).reshape(2, 3))


def test_object_array_that_is_not_0d_is_returned_as_array(tmp_path: Path) -> None:
    path = tmp_path / "o.npy"
    array = np.empty(2, dtype=object)
    array[0], array[1] = {"a": 1}, [1, 2]
    np.save(path, array)
    loaded = load_pickled_npy(path)
    assert loaded.shape == (2,)
    assert loaded[0] == {"a": 1} and loaded[1] == [1, 2]


class _TouchSentinel:
    """Unpickling this runs ``Path.touch(sentinel)``."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.sentinel,))


class _ShellCommand:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.system, (self.command,))


class _Eval:
    """Unpickling this runs ``builtins.eval(source)``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (builtins.eval, (self.source,))


class _Subprocess:
    """Unpickling this runs ``subprocess.call(argv)``."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (subprocess.call, (self.argv,))


def _save_malicious(path: Path, payload: object) -> Path:
    np.save(path, {"weights": np.ones(3), "payload": payload})  # type: ignore[arg-type]
    return path


def test_a_pickle_that_would_write_a_file_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = _save_malicious(tmp_path / "weights_subject-01.npy", _TouchSentinel(sentinel))
    with pytest.raises(ModelLoadError) as info:
        load_pickled_npy(path)
    assert not sentinel.exists()
    message = str(info.value)
    assert str(path) in message
    assert "refusing to load pathlib" in message
    assert "only numpy arrays and plain Python containers are allowed" in message
    # control: the file really is dangerous with a plain np.load
    np.load(path, allow_pickle=True)
    assert sentinel.exists()


def test_a_pickle_that_would_call_os_system_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "shell-ran"
    path = _save_malicious(tmp_path / "m.npy", _ShellCommand(f"touch '{sentinel}'"))
    with pytest.raises(ModelLoadError, match=r"refusing to load (posix|nt|os)\.system"):
        load_pickled_npy(path)
    assert not sentinel.exists()


def test_a_pickle_that_would_eval_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "eval-ran"
    path = _save_malicious(tmp_path / "e.npy", _Eval(f"open({str(sentinel)!r}, 'w').close()"))
    with pytest.raises(ModelLoadError, match=r"refusing to load builtins\.eval"):
        load_pickled_npy(path)
    assert not sentinel.exists()
    np.load(path, allow_pickle=True)  # control: the file really runs eval
    assert sentinel.exists()


def test_a_pickle_that_would_start_a_subprocess_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "subprocess-ran"
    argv = [sys.executable, "-c", f"open({str(sentinel)!r}, 'w').close()"]
    path = _save_malicious(tmp_path / "s.npy", _Subprocess(argv))
    with pytest.raises(ModelLoadError, match=r"refusing to load subprocess\.call"):
        load_pickled_npy(path)
    assert not sentinel.exists()
    np.load(path, allow_pickle=True)  # control: the file really starts a process
    assert sentinel.exists()


def test_persistent_ids_are_refused() -> None:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "weights" if isinstance(obj, np.ndarray) else None

    for protocol in (2, 4, 5):  # protocol 2 writes BINPERSID, 0 would write PERSID
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=protocol).dump({"a": np.arange(3)})
        with pytest.raises(pickle.UnpicklingError, match="refusing persistent references"):
            loads_restricted(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing persistent references"):
        loads_restricted(b"\x80\x02Pweights\n.")


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval),
        b"cbuiltins\nexec\n(Vprint(1)\ntR.",
        b"cbuiltins\ngetattr\n(cbuiltins\nobject\nV__subclasses__\ntR.",
        pickle.dumps(np.load),
    ],
)
def test_restricted_unpickler_refuses_other_globals(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        loads_restricted(payload)


def test_restricted_unpickler_loads_plain_data() -> None:
    data = {"a": np.arange(3), "b": [1, "x", None], "c": np.dtype("float32")}
    for protocol in (2, 4, 5):
        loaded = loads_restricted(pickle.dumps(data, protocol=protocol))
        np.testing.assert_array_equal(loaded["a"], np.arange(3))
        assert loaded["b"] == [1, "x", None]
        assert loaded["c"] == np.dtype("float32")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape(f"file not found: {tmp_path / 'nope.npy'}")):
        load_pickled_npy(tmp_path / "nope.npy")


def test_not_a_npy_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.npy"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a npy")
    with pytest.raises(ModelLoadError, match=r"could not read .*fake\.npy as a \.npy file"):
        load_pickled_npy(path)


def test_truncated_pickle(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, {"a": np.arange(1000)})  # type: ignore[arg-type]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_pickled_npy(path)
