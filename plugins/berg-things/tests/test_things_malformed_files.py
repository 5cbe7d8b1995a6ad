"""Malformed but data-only THINGS-fMRI1 files: each is refused, naming the file and the key path.

Every case writes a berg_dir in the reference layout with ONE malformation and goes through the
public API. Weights are small (k = 1 component) but have the card's sizes (211,339 voxels,
460,800 features); every check runs before the backbone is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from berg_things.card import METADATA_FILE, MODEL_ID, N_VOXELS, ROIS, WEIGHTS_FILE

from berg_core import BERG, ModelLoadError, registry

D = 460_800
K = 1
SUBJECT = 2


def _weights(rng: np.random.Generator) -> dict[str, Any]:
    f32 = np.float32
    return {
        "scaler_param": {
            "scale_": rng.uniform(0.5, 2.0, D).astype(f32),
            "mean_": rng.standard_normal(D).astype(f32),
            "var_": np.ones(D, f32),
            "n_features_in_": D,
            "n_samples_seen_": 8640,
        },
        "pca_param": {
            "components_": (rng.standard_normal((K, D)) / np.sqrt(D)).astype(f32),
            "explained_variance_": np.ones(K, f32),
            "explained_variance_ratio_": np.full(K, 0.1, f32),
            "singular_values_": np.ones(K, f32),
            "mean_": np.zeros(D, f32),
            "n_components_": K,
            "n_samples_": 8640,
            "noise_variance_": f32(0.0),
            "n_features_in_": D,
        },
        "reg_param": {
            "coef_": rng.standard_normal((N_VOXELS, K)).astype(f32),
            "intercept_": rng.standard_normal(N_VOXELS).astype(f32),
            "n_features_in_": K,
        },
    }


def _metadata(rng: np.random.Generator) -> dict[str, Any]:
    coords = np.unravel_index(rng.choice(72 * 91 * 76, N_VOXELS, replace=False), (72, 91, 76))
    return {
        "fmri": {
            "voxel_coords": np.stack(coords, axis=1).astype(np.int64),
            "n_voxels": N_VOXELS,
            "subject_id": SUBJECT,
        },
        "roi": {
            name: np.sort(rng.choice(N_VOXELS, 30, replace=False)).astype(np.int64) for name in ROIS
        },
    }


def _paths(root: Path) -> tuple[Path, Path]:
    return root / WEIGHTS_FILE.format(subject=SUBJECT), root / METADATA_FILE.format(subject=SUBJECT)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Well-formed (weights, metadata) in the reference format, and a berg_dir holding them."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("good")
    weights, metadata = _weights(rng), _metadata(rng)
    for path, data in zip(_paths(root), (weights, metadata), strict=True):
        path.parent.mkdir(parents=True)
        np.save(path, data, allow_pickle=True)
    return weights, metadata, root


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def _write(root: Path, good: Any, weights: Any = None, metadata: Any = None) -> Any:
    """A berg_dir with *weights*/*metadata* written (``None``: hard links to the good files)."""
    for path, data, source in zip(_paths(root), (weights, metadata), _paths(good[2]), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            os.link(source, path)
        else:
            np.save(path, data, allow_pickle=True)
    return BERG(root), *_paths(root)


def _refused(call: Callable[[], Any], path: Path, key: str, found: str) -> str:
    with pytest.raises(ModelLoadError) as info:
        call()
    message = str(info.value)
    assert f"{path}: {key}" in message, message
    assert found in message, message
    return message


WEIGHT_CASES = {
    "reg-is-list": (("reg_param",), "LIST", "is a list"),
    "pca-is-float": (("pca_param",), 1.0, "is a float"),
    "coef-is-class": (("reg_param", "coef_"), np.ndarray, "the class numpy.ndarray"),
    "coef-missing": (("reg_param", "coef_"), None, "lacks key(s) coef_"),
    "coef-0d": (("reg_param", "coef_"), np.array(0.5, np.float32), "shape ()"),
    "coef-rows": (("reg_param", "coef_"), np.zeros((N_VOXELS - 1, K), np.float32), "(211339, 1)"),
    "coef-k": (("reg_param", "coef_"), np.zeros((N_VOXELS, 2), np.float32), "(211339, 1)"),
    "coef-int": (("reg_param", "coef_"), np.zeros((N_VOXELS, K), np.int16), "dtype int16"),
    "intercept-2d": (("reg_param", "intercept_"), np.zeros((N_VOXELS, 1), np.float32), "(211339,)"),
    "components-dim": (("pca_param", "components_"), np.zeros((K, D - 768), np.float32), "460800)"),
    "scale-dim": (("scaler_param", "scale_"), np.ones(D // 2, np.float32), "(460800,)"),
    "scale-bool": (("scaler_param", "scale_"), np.ones(D, bool), "dtype bool"),
}


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_malformed_weights_are_refused(tmp_path: Path, good: Any, case: str) -> None:
    keys, value, found = WEIGHT_CASES[case]
    weights = {k: dict(v) for k, v in good[0].items()}
    if isinstance(value, str):
        value = list(weights[keys[0]].values())
    if value is None:
        del weights[keys[0]][keys[1]]
        keys = keys[:1]
    elif len(keys) == 1:
        weights[keys[0]] = value
    else:
        weights[keys[0]][keys[1]] = value
    berg, wpath, _ = _write(tmp_path, good, weights=weights)
    key = "weights" + "".join(f"[{k!r}]" for k in keys)
    _refused(lambda: berg.get_encoding_model(MODEL_ID, subject=SUBJECT), wpath, key, found)


def test_weights_lacking_a_regression(tmp_path: Path, good: Any) -> None:
    weights = {k: v for k, v in good[0].items() if k != "reg_param"}
    berg, wpath, _ = _write(tmp_path, good, weights=weights)
    _refused(
        lambda: berg.get_encoding_model(MODEL_ID, subject=SUBJECT),
        wpath,
        "weights lacks key(s) reg_param",
        "has: scaler_param, pca_param",
    )


ROI_KEY = "metadata['roi']['V1']"
ROI_CASES = {
    "float": (np.array([10.7, 20.9]), "dtype float64"),
    "whole-floats": (np.array([10.0, 20.0]), "dtype float64"),
    # the attack: a full-length mask read as indices is 211,339 copies of voxels 0 and 1
    "bool-mask": (np.isin(np.arange(N_VOXELS), [4, 8]), "shape (211339,) and dtype bool"),
    "2d": (np.array([[1, 2]]), "shape (1, 2)"),
    "list": ([1, 2], "is a list"),
    "class": (np.ndarray, "the class numpy.ndarray"),
    "negative": (np.array([-5]), "holding -5 at position 0"),
    "too-large": (np.array([1, 2, N_VOXELS]), f"holding {N_VOXELS} at position 2"),
}


@pytest.mark.parametrize("case", list(ROI_CASES))
def test_malformed_roi_is_refused_everywhere(tmp_path: Path, good: Any, case: str) -> None:
    value, found = ROI_CASES[case]
    metadata = {**good[1], "roi": {**good[1]["roi"], "V1": value}}
    berg, _, mpath = _write(tmp_path, good, metadata=metadata)
    _refused(lambda: berg.get_model_metadata(MODEL_ID, subject=SUBJECT), mpath, ROI_KEY, found)
    for selection in ({"roi": ["V1"]}, {"roi": ["V2"]}, None):  # the file, not only the ROI
        _refused(
            lambda s=selection: berg.get_encoding_model(MODEL_ID, subject=SUBJECT, selection=s),
            mpath,
            ROI_KEY,
            found,
        )


@pytest.mark.parametrize(
    ("metadata", "key", "found"),
    [
        (lambda m: {**m, "roi": [1, 2]}, "metadata['roi']", "is a list"),
        (lambda m: {"fmri": m["fmri"]}, "metadata lacks key(s) roi", "has: fmri"),
        (lambda m: {**m, "fmri": {}}, "metadata['fmri'] lacks key(s) voxel_coords", "has: none"),
        (
            lambda m: {**m, "fmri": {"voxel_coords": m["fmri"]["voxel_coords"].astype(float)}},
            "metadata['fmri']['voxel_coords']",
            "dtype float64",
        ),
        (
            lambda m: {**m, "fmri": {"voxel_coords": m["fmri"]["voxel_coords"][:, :2]}},
            "metadata['fmri']['voxel_coords']",
            "shape (211339, 2)",
        ),
        (lambda m: [m], "metadata", "expected a dict with key(s) fmri, roi"),
    ],
    ids=["roi-list", "roi-missing", "coords-missing", "coords-float", "coords-2", "top-list"],
)
def test_malformed_metadata(
    tmp_path: Path, good: Any, metadata: Callable[[Any], Any], key: str, found: str
) -> None:
    berg, _, mpath = _write(tmp_path, good, metadata=metadata(good[1]))
    _refused(lambda: berg.get_model_metadata(MODEL_ID, subject=SUBJECT), mpath, key, found)


class _ReachedBackboneError(Exception):
    """Raised in place of loading the backbone: every file check before it passed."""


def test_well_formed_files_pass_every_check(
    tmp_path: Path, good: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: integer ROIs (unsorted, repeated, another integer dtype) are accepted as is,
    and the well-formed weights get as far as the backbone (stubbed out, to stay fast)."""
    import berg_things.model
    from berg_things.selection import ThingsSelection

    def backbone(*args: Any, **kwargs: Any) -> None:
        raise _ReachedBackboneError

    monkeypatch.setattr(berg_things.model, "load_pretrained", backbone)
    roi = np.array([7, 3, 3, N_VOXELS - 1], dtype=np.uint32)
    metadata = {**good[1], "roi": {**good[1]["roi"], "V1": roi}}
    berg, _, _ = _write(tmp_path, good, metadata=metadata)
    loaded = berg.get_model_metadata(MODEL_ID, subject=SUBJECT)
    np.testing.assert_array_equal(loaded["roi"]["V1"], roi)
    voxels, _ = ThingsSelection(roi=["V1"]).resolve(loaded["roi"])
    assert voxels.tolist() == [7, 3, 3, N_VOXELS - 1]
    with pytest.raises(_ReachedBackboneError):
        berg.get_encoding_model(MODEL_ID, subject=SUBJECT, selection={"roi": ["V1"]})
