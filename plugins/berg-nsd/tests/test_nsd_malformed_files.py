"""Malformed but data-only NSD model files: each is refused, naming the file and the key path.

Every case writes a berg_dir in the reference layout with ONE malformation and goes through the
public API. Weights are small (k = 2 components) but have the card's sizes (163,842 vertices, the
backbone's feature count), so that a well-formed file loads; the checks run before the backbone
is built, so a refused file costs no backbone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nsd_reference import UNTRAINED, make_metadata, metadata_path, weights_path

from berg_core import BERG, ModelLoadError

N = 163_842
D = 205_672  # untrained AlexNet features at 224 x 224
K = 2
SUBJECT = 3
FOLDER = "alexnet_untrained"


def _weights() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    f32 = np.float32
    weights: dict[str, Any] = {
        "scaler_param": {
            "scale_": rng.uniform(0.5, 2.0, D).astype(f32),
            "mean_": rng.standard_normal(D).astype(f32),
            "var_": np.ones(D, f32),
            "n_features_in_": D,
            "n_samples_seen_": 9000,
        },
        "pca_param": {
            "components_": (rng.standard_normal((K, D)) / np.sqrt(D)).astype(f32),
            "explained_variance_": np.ones(K, f32),
            "explained_variance_ratio_": np.full(K, 0.1, f32),
            "singular_values_": np.ones(K, f32),
            "mean_": np.zeros(D, f32),
            "n_components_": K,
            "n_samples_": 9000,
            "noise_variance_": f32(0.5),
            "n_features_in_": D,
        },
    }
    for hemisphere in ("lh", "rh"):
        weights[f"{hemisphere}_reg_param"] = {
            "coef_": rng.standard_normal((N, K)).astype(f32),
            "intercept_": rng.standard_normal(N).astype(f32),
            "n_features_in_": K,
        }
    return weights


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """A well-formed (weights, metadata) pair in the reference format, and a berg_dir holding it."""
    root = tmp_path_factory.mktemp("good")
    weights, metadata = _weights(), make_metadata(np.random.default_rng(6))
    _write(root, weights, metadata)
    return weights, metadata, root


def _write(root: Path, weights: Any, metadata: Any, good_root: Path | None = None) -> Any:
    """Write *weights* and *metadata* (``None``: hard-link the file of *good_root*)."""
    paths = weights_path(root, FOLDER, SUBJECT), metadata_path(root, FOLDER, SUBJECT)
    sources = weights_path, metadata_path
    for path, data, source in zip(paths, (weights, metadata), sources, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            assert good_root is not None
            os.link(source(good_root, FOLDER, SUBJECT), path)
        else:
            np.save(path, data, allow_pickle=True)
    return BERG(root), *paths


def _refused(call: Callable[[], Any], path: Path, key: str, *found: str) -> str:
    """Assert *call* raises ModelLoadError naming *path*, *key* and each of *found*."""
    with pytest.raises(ModelLoadError) as info:
        call()
    message = str(info.value)
    assert f"{path}: {key}" in message, message
    for part in found:
        assert part in message, message
    return message


# --- weights --------------------------------------------------------------------------------


def _set(weights: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    target = weights
    for key in keys[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


_DELETE = object()

WEIGHT_CASES = {
    # kind: a list / a class object / a number where a dict or an array belongs
    "reg-is-list": (("lh_reg_param",), "LIST", "is a list"),
    "scaler-is-array": (("scaler_param",), np.zeros(3), "is an array of shape (3,)"),
    "coef-is-class": (("rh_reg_param", "coef_"), np.ndarray, "the class numpy.ndarray"),
    "mean-is-float": (("scaler_param", "mean_"), 0.5, "is a float"),
    "components-is-list": (("pca_param", "components_"), [[0.0] * 4], "is a list"),
    "missing-coef": (("lh_reg_param", "coef_"), _DELETE, "lacks key(s) coef_"),
    "missing-scale": (("scaler_param", "scale_"), _DELETE, "lacks key(s) scale_"),
    # number of dimensions
    "coef-0d": (("lh_reg_param", "coef_"), np.array(1.5, np.float32), "shape ()"),
    "coef-1d": (("lh_reg_param", "coef_"), np.zeros(N, np.float32), f"shape ({N},)"),
    "coef-3d": (("rh_reg_param", "coef_"), np.zeros((N, K, 1), np.float32), f"({N}, {K}, 1)"),
    "components-1d": (("pca_param", "components_"), np.zeros(D, np.float32), f"shape ({D},)"),
    # sizes: against the card and against each other
    "coef-rows": (("lh_reg_param", "coef_"), np.zeros((N - 1, K), np.float32), f"({N}, {K})"),
    "coef-k": (("rh_reg_param", "coef_"), np.zeros((N, K + 1), np.float32), f"({N}, {K})"),
    "intercept-size": (("lh_reg_param", "intercept_"), np.zeros(N + 1, np.float32), f"({N},)"),
    "components-dim": (("pca_param", "components_"), np.zeros((K, 10), np.float32), f"{D})"),
    "scaler-mean-dim": (("scaler_param", "mean_"), np.zeros(D - 1, np.float32), f"({D},)"),
    "pca-mean-2d": (("pca_param", "mean_"), np.zeros((1, D), np.float32), f"({D},)"),
    # dtype kind: weights are floating-point
    "coef-int": (("lh_reg_param", "coef_"), np.zeros((N, K), np.int32), "dtype int32"),
    "coef-bool": (("lh_reg_param", "coef_"), np.zeros((N, K), bool), "dtype bool"),
    "coef-complex": (("lh_reg_param", "coef_"), np.zeros((N, K), np.complex64), "complex64"),
    "coef-str": (("lh_reg_param", "coef_"), np.full((N, K), "x"), "dtype <U1"),
    "intercept-object": (("rh_reg_param", "intercept_"), np.array([None] * N), "dtype object"),
    # values of the small (D,) vectors: a NaN or a zero scale makes every response NaN/inf
    "scale-zero": (("scaler_param", "scale_"), "ZERO_AT_7", "holding 0.0 at position 7"),
    "mean-nan": (("pca_param", "mean_"), "NAN_AT_3", "holding nan at position 3"),
}


def _key(keys: tuple[str, ...]) -> str:
    return "weights" + "".join(f"[{key!r}]" for key in keys)


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_malformed_weights_are_refused(tmp_path: Path, good: Any, case: str) -> None:
    keys, value, found = WEIGHT_CASES[case]
    weights = {k: dict(v) for k, v in good[0].items()}  # copies of the inner dicts
    if isinstance(value, str) and value == "LIST":
        value = list(weights[keys[0]].values())
    elif isinstance(value, str):
        array = weights[keys[0]][keys[1]].copy()
        array[int(value.rsplit("_", 1)[1])] = 0.0 if value.startswith("ZERO") else np.nan
        value = array
    _set(weights, keys, value)
    berg, wpath, _ = _write(tmp_path, weights, None, good[2])
    # the reported key is the deepest one that exists: the dict when a key is missing
    key = _key(keys[:-1] if value is _DELETE else keys)
    _refused(lambda: berg.get_encoding_model(UNTRAINED, subject=SUBJECT), wpath, key, found)


def test_weights_top_level_not_a_dict(tmp_path: Path, good: Any) -> None:
    berg, wpath, _ = _write(tmp_path, np.arange(3), None, good[2])
    with pytest.raises(ModelLoadError, match=re.escape(f"{wpath} holds a ndarray, not the dict")):
        berg.get_encoding_model(UNTRAINED, subject=SUBJECT)


def test_well_formed_weights_load_and_unused_keys_are_optional(tmp_path: Path, good: Any) -> None:
    """The test can fail: the same files, well formed, load (with only the keys used)."""
    weights = {k: dict(v) for k, v in good[0].items()}
    weights["scaler_param"] = {k: weights["scaler_param"][k] for k in ("mean_", "scale_")}
    weights["pca_param"] = {k: weights["pca_param"][k] for k in ("components_", "mean_")}
    for hemisphere in ("lh", "rh"):
        del weights[f"{hemisphere}_reg_param"]["n_features_in_"]
    berg, _, _ = _write(tmp_path, weights, None, good[2])
    with berg.get_encoding_model(UNTRAINED, subject=SUBJECT, selection={"roi": "V1v"}) as model:
        columns = model.column_indices()
    roi = good[1]["fmri"]["lh_fsaverage_rois"]["V1v"]
    np.testing.assert_array_equal(columns["lh"], np.unique(roi))


# --- metadata: ROI tables ---------------------------------------------------------------------

ROI_KEY = "metadata['fmri']['lh_fsaverage_rois']['V1v']"

ROI_CASES = {
    # floats, even whole-number ones, would be truncated to other vertices
    "float": (np.array([10.7, 20.9]), "dtype float64"),
    "whole-floats": (np.array([10.0, 20.0]), "dtype float64"),
    # a 0/1 mask is not a list of indices: read as indices it selects vertices 0 and 1
    "bool-mask": (np.isin(np.arange(N), [5, 9]), f"shape ({N},) and dtype bool"),
    "int-mask-short": (np.array([True, False, True]), "dtype bool"),
    "2d": (np.array([[1, 2], [3, 4]]), "shape (2, 2)"),
    "0d": (np.array(7), "shape ()"),
    "object": (np.array([1, 2], dtype=object), "dtype object"),
    "list": ([1, 2, 3], "is a list"),
    "string": ("V1v", "is a str"),
    "class": (np.ndarray, "the class numpy.ndarray"),
    "negative": (np.array([4, -1, 6]), "holding -1 at position 1"),
    "too-large": (np.array([0, N]), f"holding {N} at position 1"),
    "uint-too-large": (np.array([2**64 - 1], np.uint64), f"holding {2**64 - 1} at position 0"),
}


def _metadata_with(good_metadata: dict[str, Any], value: Any) -> dict[str, Any]:
    metadata = {**good_metadata, "fmri": dict(good_metadata["fmri"])}
    metadata["fmri"]["lh_fsaverage_rois"] = {
        **good_metadata["fmri"]["lh_fsaverage_rois"],
        "V1v": value,
    }
    return metadata


@pytest.mark.parametrize("case", list(ROI_CASES))
def test_malformed_roi_is_refused_everywhere(tmp_path: Path, good: Any, case: str) -> None:
    value, found = ROI_CASES[case]
    berg, _, mpath = _write(tmp_path, None, _metadata_with(good[1], value), good[2])
    expected = "1-D array of fsaverage vertex indices in 0..163841"
    _refused(lambda: berg.get_model_metadata(UNTRAINED, subject=SUBJECT), mpath, ROI_KEY, found)
    # no model with a wrong selection is ever built: the ROI is refused before any is
    message = _refused(
        lambda: berg.get_encoding_model(UNTRAINED, subject=SUBJECT, selection={"roi": "V1v"}),
        mpath,
        ROI_KEY,
        found,
    )
    assert expected in message or "only fsaverage vertex indices in 0..163841" in message


def test_another_malformed_roi_also_refuses_the_file(tmp_path: Path, good: Any) -> None:
    """The whole file is checked when read, not only the ROI asked for."""
    berg, _, mpath = _write(tmp_path, None, _metadata_with(good[1], np.array([1.5])), good[2])
    with pytest.raises(ModelLoadError, match=re.escape(f"{mpath}: {ROI_KEY}")):
        berg.get_encoding_model(UNTRAINED, subject=SUBJECT, selection={"roi": "PPA"})


@pytest.mark.parametrize(
    ("mutate", "key", "found"),
    [
        (lambda m: m.__setitem__("fmri", [1]), "metadata['fmri']", "is a list"),
        (
            lambda m: m["fmri"].pop("rh_fsaverage_rois"),
            "metadata['fmri'] lacks key(s) rh_fsaverage_rois",
            "has: ",
        ),
        (
            lambda m: m["fmri"].__setitem__("lh_fsaverage_rois", np.arange(3)),
            "metadata['fmri']['lh_fsaverage_rois']",
            "is an array of shape (3,)",
        ),
    ],
    ids=["fmri-list", "table-missing", "table-array"],
)
def test_malformed_roi_tables(
    tmp_path: Path, good: Any, mutate: Callable[[dict[str, Any]], Any], key: str, found: str
) -> None:
    metadata = {**good[1], "fmri": dict(good[1]["fmri"])}
    mutate(metadata)
    berg, _, mpath = _write(tmp_path, None, metadata, good[2])
    _refused(lambda: berg.get_model_metadata(UNTRAINED, subject=SUBJECT), mpath, key, found)


def test_well_formed_roi_selects_exactly_its_vertices(tmp_path: Path, good: Any) -> None:
    """The control of the ROI cases: integer indices, unsorted and repeated, are accepted."""
    roi = np.array([20, 10, 20, N - 1], dtype=np.int32)
    berg, _, _ = _write(tmp_path, None, _metadata_with(good[1], roi), good[2])
    table = berg.get_model_metadata(UNTRAINED, subject=SUBJECT)["fmri"]["lh_fsaverage_rois"]
    np.testing.assert_array_equal(table["V1v"], roi)
    with berg.get_encoding_model(UNTRAINED, subject=SUBJECT, selection={"roi": "V1v"}) as model:
        assert model.column_indices()["lh"].tolist() == [10, 20, N - 1]
