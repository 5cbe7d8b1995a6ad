"""Pickled scikit-learn PCA objects (weight generation C) are read as data, never run."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

from berg_core import ModelLoadError
from berg_core.safe_npy import load_pickled_npy, loads_restricted

PCA_GLOBAL = b"\x8c\x1asklearn.decomposition._pca\x8c\x03PCA\x93"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def test_a_pickled_pca_becomes_the_dict_of_its_attributes_without_scikit_learn(tmp_path: Path):
    fitted = PCA(2, random_state=5).fit(np.random.default_rng(0).normal(size=(6, 5)))
    path = tmp_path / "w.npy"
    np.save(path, {"pca_param": {"rep-1": fitted}}, allow_pickle=True)
    code = (
        "import sys; from berg_core.safe_npy import load_pickled_npy; "
        f"d = load_pickled_npy({str(path)!r})['pca_param']['rep-1']; "
        "print(type(d).__name__, sorted(d)[:3], 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "dict",
        "['_fit_svd_solver',",
        "'_sklearn_version',",
        "'components_']",
        "False",
    ]
    attributes = load_pickled_npy(path)["pca_param"]["rep-1"]
    for key, value in vars(fitted).items():
        np.testing.assert_array_equal(attributes[key], value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # a class outside the allow-list, under scikit-learn's name
        (b"\x80\x04\x8c\x1asklearn.decomposition._pca\x8c\x09KernelPCA\x93)\x81}b.", "KernelPCA"),
        # an allowed class whose state holds a class (a callable)
        (
            b"\x80\x04"
            + PCA_GLOBAL
            + b")\x81}"
            + _str("mean_")
            + b"\x8c\x05numpy\x8c\x07ndarray\x93sb.",
            "attribute 'mean_' is",
        ),
        # ... or a nested object
        (
            b"\x80\x04" + PCA_GLOBAL + b")\x81}" + _str("x") + PCA_GLOBAL + b")\x81}bsb.",
            "attribute 'x' is",
        ),
        # called with arguments instead of instantiated
        (b"\x80\x04" + PCA_GLOBAL + b"K\x01\x85R.", "refusing to call"),
        (b"\x80\x04" + PCA_GLOBAL + b"K\x01\x85\x81.", "refusing to call"),
        # a state that is not a dict, and a second BUILD
        (b"\x80\x04" + PCA_GLOBAL + b")\x81N\x85b.", "tuple state"),
        (b"\x80\x04" + PCA_GLOBAL + b")\x81}b}b.", "refusing BUILD on a dict"),
        (b"\x80\x04(" + PCA_GLOBAL + b")\x81\x94}bh\x00}bl.", "already built"),
        # the class itself as a value
        (b"\x80\x04" + PCA_GLOBAL + b".", "as a value"),
    ],
)
def test_crafted_pca_pickles_are_refused(payload: bytes, message: str):
    with pytest.raises(pickle.UnpicklingError, match=message):
        loads_restricted(payload)


def test_a_pca_whose_state_would_run_code_runs_nothing(tmp_path: Path):
    sentinel = tmp_path / "ran"
    command = f"touch {sentinel}"
    call = b"\x8c\x02os\x8c\x06system\x93" + _str(command) + b"\x85R"
    payload = b"\x80\x04" + PCA_GLOBAL + b")\x81}" + _str("mean_") + call + b"sb."
    path = tmp_path / "evil.npy"
    header = np.lib.format.header_data_from_array_1_0(np.empty((), dtype=object))
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(payload)
    with pytest.raises(ModelLoadError, match=r"refusing to load os\.system"):
        load_pickled_npy(path)
    assert not sentinel.exists()
