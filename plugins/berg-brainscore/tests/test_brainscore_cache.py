"""The regression cache: safe format, exact prediction, atomic writes, refits, one fit per lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("brainscore_vision")

from berg_brainscore import cache
from berg_brainscore.cache import CacheMismatchError, Regression

KEY = {
    "format": cache.FORMAT,
    "model_identifier": "m",
    "model_revision": "r1",
    "region": "IT",
    "layer": "features.12",
    "benchmark": "MajajHong2015public.IT-pls",
    "n_components": 25,
    "scale": False,
    "brainscore_vision": "2.4.2",
    "brainscore_core": "2.5.0",
    "scikit_learn": "1.5.2",
}


def fitted_pls(n: int = 60, features: int = 300, targets: int = 7, seed: int = 0):
    """A PLSRegression as Brain-Score's pls_regression() makes it, fitted on float32 data."""
    from sklearn.cross_decomposition import PLSRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32) + 3
    y = x[:, :targets] @ rng.normal(size=(targets, targets)) + rng.normal(size=(n, targets))
    pls = PLSRegression(n_components=25, scale=False)
    pls.fit(x, y)
    return pls, rng


def regression_of(pls, info: dict | None = None) -> Regression:
    targets = pls.coef_.shape[0]
    return Regression(
        x_mean=pls._x_mean,
        coef=pls.coef_,
        intercept=pls.intercept_,
        neuroid_id=np.array([f"Chabo_L_M_{i}" for i in range(targets)]),
        neuroid_region=np.array(["IT"] * targets),
        time_bins=np.array([[70, 170]]),
        info=dict(info or {}),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_predict_equals_sklearn_bit_for_bit(dtype: type) -> None:
    pls, rng = fitted_pls()
    x = (rng.normal(size=(13, pls._x_mean.shape[0])) * 4).astype(dtype)
    expected = pls.predict(x)
    got = cache.predict(regression_of(pls), x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    # the input is not modified in place
    assert not np.shares_memory(got, x)


def test_predict_checks_the_width() -> None:
    pls, rng = fitted_pls()
    with pytest.raises(ValueError, match="expects"):
        cache.predict(regression_of(pls), rng.normal(size=(3, 5)))


def test_round_trip_is_bit_for_bit_and_pickle_free(tmp_path: Path) -> None:
    pls, rng = fitted_pls()
    path = cache.cache_path(tmp_path, "alexnet", "IT")
    assert path == (
        tmp_path / "encoding_models/modality-ephys/train_dataset-brainscore_vision/"
        "model-alexnet/encoding_models_weights/alexnet_IT_regression.npz"
    )
    original = regression_of(pls, {**KEY, "versions": {"torch": "2.14.1"}})
    cache.write(path, original)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert all(data[name].dtype != object for name in data.files)
    loaded = cache.read(path, KEY)
    for name in ("x_mean", "coef", "intercept", "neuroid_id", "neuroid_region", "time_bins"):
        a, b = getattr(original, name), getattr(loaded, name)
        assert a.dtype == b.dtype or name.startswith("neuroid"), name
        np.testing.assert_array_equal(a, b)
    assert loaded.info == json.loads(json.dumps(original.info))
    x = rng.normal(size=(9, pls._x_mean.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(cache.predict(loaded, x), pls.predict(x))
    assert loaded.time_bin_list() == [(70, 170)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("brainscore_vision", "2.4.1"),
        ("model_revision", "r2"),
        ("layer", "features.9"),
        ("benchmark", "MajajHong2015public.V4-pls"),
        ("format", 0),
    ],
)
def test_a_mismatching_cache_is_refitted(tmp_path: Path, field: str, value: object) -> None:
    pls, _ = fitted_pls()
    path = tmp_path / "r.npz"
    cache.write(path, regression_of(pls, {**KEY, field: value}))
    with pytest.raises(CacheMismatchError, match=f"{field} = "):
        cache.read(path, KEY)
    calls = []

    def fit() -> Regression:
        calls.append(1)
        return regression_of(pls)

    with pytest.warns(RuntimeWarning, match=f"refitting, because .*{field}"):
        regression, fitted = cache.load_or_fit(path, KEY, fit)
    assert fitted and calls == [1]
    assert cache.read(path, KEY).info[field] == KEY[field]
    again, fitted = cache.load_or_fit(path, KEY, fit)  # now it matches: used, not refitted
    assert not fitted and calls == [1]
    np.testing.assert_array_equal(again.coef, regression.coef)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "pickle", "no_info", "bad_shape"],
)
def test_a_damaged_cache_is_refitted_not_trusted(tmp_path: Path, damage: str) -> None:
    pls, _ = fitted_pls()
    path = tmp_path / "r.npz"
    good = regression_of(pls, KEY)
    cache.write(path, good)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "pickle":  # an object array would need allow_pickle=True
        arrays = {n: getattr(good, n) for n in ("x_mean", "coef", "intercept", "time_bins")}
        arrays["neuroid_id"] = np.array([object()] * good.n_neuroids, dtype=object)
        arrays["neuroid_region"] = good.neuroid_region
        arrays["info"] = np.array(json.dumps(KEY))
        np.savez(path, **arrays)
    elif damage == "no_info":
        np.savez(path, x_mean=good.x_mean, coef=good.coef)
    else:
        arrays = {n: getattr(good, n) for n in cache._ARRAYS}
        arrays["intercept"] = arrays["intercept"][:-1]
        np.savez(path, **arrays, info=np.array(json.dumps(KEY)))
    with pytest.raises(CacheMismatchError):
        cache.read(path, KEY)
    with pytest.warns(RuntimeWarning, match="refitting"):
        _, fitted = cache.load_or_fit(path, KEY, lambda: regression_of(pls))
    assert fitted
    np.testing.assert_array_equal(cache.read(path, KEY).coef, good.coef)


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pls, _ = fitted_pls()
    path = tmp_path / "r.npz"
    cache.write(path, regression_of(pls, KEY))
    before = path.read_bytes()

    def broken_replace(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.write(path, regression_of(pls, {**KEY, "region": "V4"}))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]


def test_two_processes_fit_once_and_leave_one_intact_file(tmp_path: Path) -> None:
    """Both ask for a missing regression at once: one fits (slowly), the other waits and reads."""
    path = tmp_path / "shared" / "r.npz"
    log = tmp_path / "fits.log"
    script = textwrap.dedent(
        f"""
        import json, os, sys, time
        import numpy as np
        from berg_brainscore import cache

        key = json.loads({json.dumps(json.dumps(KEY))})
        def fit():
            with open({str(log)!r}, "a") as stream:
                stream.write(f"{{os.getpid()}}\\n")
            time.sleep(2.0)  # a slow fit, so that the other process arrives meanwhile
            rng = np.random.default_rng(1)
            return cache.Regression(
                x_mean=rng.normal(size=50), coef=rng.normal(size=(4, 50)),
                intercept=rng.normal(size=4), neuroid_id=np.array(list("abcd")),
                neuroid_region=np.array(["IT"] * 4), time_bins=np.array([[70, 170]]))
        regression, fitted = cache.load_or_fit(cache.Path({str(path)!r}), key, fit)
        print(json.dumps({{"fitted": fitted, "coef0": float(regression.coef[0, 0])}}))
        """
    )
    start = time.time()
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["fitted"] for r in results) == [False, True]
    assert results[0]["coef0"] == results[1]["coef0"]
    assert len(log.read_text().split()) == 1  # fitted once
    assert time.time() - start < 60
    regression = cache.read(path, KEY)  # one intact file
    assert regression.coef.shape == (4, 50)
    leftovers = sorted(p.name for p in path.parent.iterdir() if p.name != path.name)
    assert all(name.endswith(".lock") for name in leftovers), leftovers
    assert os.path.getsize(path) > 0
