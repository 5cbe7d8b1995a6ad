"""The trained checkpoint as the berg model fmri-nsd_fsaverage-factortopy."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from berg_factortopy.data import TrainingData
from berg_factortopy.layout import berg_dir_checkpoint
from berg_factortopy.train import TrainResult

from berg_core import BERG, InvalidParameterError, ModelLoadError
from berg_core.output import write_responses
from berg_core.stimulus import as_stimulus

MODEL = "fmri-nsd_fsaverage-factortopy"
N = 163_842


@pytest.fixture(scope="module")
def val_files(data: TrainingData, trained: TrainResult) -> list[str]:
    """The validation images, as the files training read."""
    assert data.images.sources is not None
    return [data.images.sources[i] for i in trained.val_indices]


def test_registered_like_the_nsd_models(berg: BERG):
    assert MODEL in berg.list_models("fmri-nsd_fsaverage-*")
    info = berg.describe(MODEL, print_format=False)
    assert info["subjects"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert list(info["outputs"]) == ["lh", "rh"]
    assert info["selection_keys"] == ["roi", "lh_vertices", "rh_vertices"]
    assert list(info["options"]) == ["batch_size", "checkpoint", "threads"]
    assert info["option_specs"]["threads"]["type"] == "integer | null"
    assert info["option_specs"]["checkpoint"]["type"] == "string | null"
    assert "berg train factortopy" in info["option_specs"]["checkpoint"]["description"]
    assert list(info["files"]) == [
        "encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-alexnet_untrained/"
        "metadata/metadata_subject-{subject:02d}.npy"
    ]
    assert info["distribution"].startswith("berg-factortopy")


def test_encode_reproduces_the_trained_predictions(
    berg: BERG, trained: TrainResult, val_files: list[str]
):
    model = berg.get_encoding_model(
        MODEL, subject=1, device="cpu", checkpoint=trained.folder, batch_size=40
    )
    with model:
        (lh, rh), metadata = berg.encode(
            model, val_files, return_metadata=True, show_progress=False
        )
    assert lh.shape == (len(val_files), 150) and rh.shape == (len(val_files), 150)
    assert lh.dtype == rh.dtype == np.float32
    np.testing.assert_allclose(lh, trained.val_predictions[:, :150], rtol=0, atol=2e-5)
    np.testing.assert_allclose(rh, trained.val_predictions[:, 150:], rtol=0, atol=2e-5)
    columns = metadata["output"]["columns"]
    accuracy = np.load(trained.folder / "accuracy.npz")
    np.testing.assert_array_equal(columns["lh"], accuracy["lh_vertices"])
    np.testing.assert_array_equal(columns["rh"], accuracy["rh_vertices"])
    r2 = metadata["encoding_models"]["lh_r2_val"]
    assert r2.shape == (N,) and np.isnan(r2).sum() == N - 150
    np.testing.assert_array_equal(r2[columns["lh"]], trained.val_r2["lh"])
    assert "lh_fsaverage_rois" in metadata["fmri"]


def test_vertex_masks_keep_the_trained_vertices_among_them(
    berg: BERG, trained: TrainResult, val_files: list[str]
):
    accuracy = np.load(trained.folder / "accuracy.npz")
    mask = np.zeros(N, dtype=np.uint8)
    picked = accuracy["lh_vertices"][[3, 50, 149]]
    mask[picked] = 1
    mask[np.setdiff1d(np.arange(N), accuracy["lh_vertices"])[:5]] = 1  # untrained: left out
    model = berg.get_encoding_model(
        MODEL, subject=1, selection={"lh_vertices": mask}, device="cpu", checkpoint=trained.folder
    )
    lh, rh = berg.encode(model, val_files[:7], show_progress=False)
    np.testing.assert_array_equal(model.column_indices()["lh"], picked)
    assert rh.shape == (7, 150)  # no rh mask: all trained rh vertices
    np.testing.assert_allclose(lh, trained.val_predictions[:7, [3, 50, 149]], atol=2e-5)


def test_roi_selection_reads_the_nsd_metadata(
    berg: BERG, berg_dir: Path, trained: TrainResult, val_files: list[str]
):
    metadata = np.load(
        berg_dir / "encoding_models/modality-fmri/train_dataset-nsd_fsaverage/"
        "model-alexnet_untrained/metadata/metadata_subject-01.npy",
        allow_pickle=True,
    ).item()
    roi = metadata["fmri"]["lh_fsaverage_rois"]["V1v"]
    model = berg.get_encoding_model(
        MODEL, subject=1, selection={"roi": "V1v"}, device="cpu", checkpoint=trained.folder
    )
    lh, _ = berg.encode(model, val_files[:3], show_progress=False)
    accuracy = np.load(trained.folder / "accuracy.npz")
    expected = np.intersect1d(roi, accuracy["lh_vertices"])
    assert len(expected) == 30 and lh.shape == (3, 30)
    np.testing.assert_array_equal(model.column_indices()["lh"], expected)
    rows = np.searchsorted(accuracy["lh_vertices"], expected)
    np.testing.assert_allclose(lh, trained.val_predictions[:3, rows], atol=2e-5)
    with pytest.raises(InvalidParameterError, match="ROI 'FFA-1' holds none of the 300"):
        berg.get_encoding_model(
            MODEL, subject=1, selection={"roi": "FFA-1"}, device="cpu", checkpoint=trained.folder
        )


def test_berg_dir_layout_serves_encode_and_metadata(
    tmp_path: Path, trained: TrainResult, berg_dir: Path, val_files: list[str]
):
    root = tmp_path / "berg_dir"
    shutil.copytree(berg_dir, root)
    berg = BERG(root)
    with pytest.raises(ModelLoadError, match="berg train factortopy"):
        berg.get_encoding_model(MODEL, subject=1, device="cpu")
    assert berg.get_model_metadata(MODEL, subject=1)["encoding_models"] == {}
    folder = berg_dir_checkpoint(root, 1)
    shutil.copytree(trained.folder, folder, ignore=shutil.ignore_patterns("*.h5"))
    with berg.get_encoding_model(MODEL, subject=1, device="cpu") as model:
        lh, _ = berg.encode(model, val_files[:4], show_progress=False)
    np.testing.assert_allclose(lh, trained.val_predictions[:4, :150], atol=2e-5)
    metadata = berg.get_model_metadata(MODEL, subject=1)
    np.testing.assert_array_equal(
        metadata["encoding_models"]["rh_r2_val"][metadata["encoding_models"]["rh_vertices"]],
        trained.val_r2["rh"],
    )
    with pytest.raises(ModelLoadError, match=r"metadata_subject-02\.npy"):
        berg.get_model_metadata(MODEL, subject=2)


def test_wrong_subject_or_checkpoint(berg: BERG, trained: TrainResult, tmp_path: Path):
    with pytest.raises(InvalidParameterError, match="trained on subject 1, not subject 3"):
        berg.get_encoding_model(MODEL, subject=3, device="cpu", checkpoint=trained.folder)
    with pytest.raises(InvalidParameterError, match="not a FactorTopy checkpoint folder"):
        berg.get_encoding_model(MODEL, subject=1, device="cpu", checkpoint=tmp_path)
    with pytest.raises(InvalidParameterError, match="unexpected option"):
        berg.get_encoding_model(MODEL, subject=1, device="cpu", ckpt=trained.folder)
    with pytest.raises(InvalidParameterError, match="batch_size = 0"):
        berg.get_encoding_model(
            MODEL, subject=1, device="cpu", checkpoint=trained.folder, batch_size=0
        )


def test_gifti_output_round_trip(
    berg: BERG, trained: TrainResult, val_files: list[str], tmp_path: Path
):
    model = berg.get_encoding_model(MODEL, subject=1, device="cpu", checkpoint=trained.folder)
    stimulus = as_stimulus(val_files[:2])
    left, right = write_responses(model, stimulus, tmp_path / "resp.func.gii", show_progress=False)
    assert left.name == "resp_hemi-L.func.gii" and right.name == "resp_hemi-R.func.gii"
    image = nib.load(left)
    assert len(image.darrays) == 2
    values = image.darrays[1].data
    columns = model.column_indices()["lh"]
    np.testing.assert_allclose(values[columns], trained.val_predictions[1, :150], atol=2e-5)
    assert np.isnan(np.delete(values, columns)).all()
