"""NIfTI output of fmri-things_fmri_1-vit_b_32: round trips through nibabel, API and CLI."""

from __future__ import annotations

import numpy as np
import pytest
from berg_things.card import MODEL_ID, N_VOXELS
from berg_things.volume import responses_to_volume

from berg_core import InvalidParameterError
from berg_core.cli import main
from berg_core.output import write_responses
from berg_core.stimulus import as_stimulus

nib = pytest.importorskip("nibabel")


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (n, 3, 224, 224), dtype=np.uint8)


def test_volume_places_each_column_at_its_voxel():
    coords = np.array([[0, 0, 0], [1, 2, 3], [4, 0, 1]])
    responses = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)  # columns: voxels 2 and 0
    volume = responses_to_volume(responses, np.array([2, 0]), coords, (5, 3, 4))
    assert volume.shape == (5, 3, 4, 2)
    assert volume[4, 0, 1, 0] == 1.0 and volume[0, 0, 0, 1] == 4.0
    assert np.isnan(volume[1, 2, 3]).all()  # voxel 1 was not selected
    assert np.isnan(volume).sum() == 5 * 3 * 4 * 2 - 4
    with pytest.raises(InvalidParameterError, match="outside the volume shape"):
        responses_to_volume(responses, np.array([2, 0]), coords, (2, 2, 2))


def test_nifti_round_trip_with_selection_and_reference(berg, tmp_path):
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    coords = metadata["fmri"]["voxel_coords"]
    shape = tuple(int(s) + 1 for s in coords.max(axis=0))
    affine = np.diag([1.6, 1.6, 1.6, 1.0])
    affine[:3, 3] = [-60.0, -80.0, -40.0]
    reference = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.uint8), affine), reference)

    model = berg.get_encoding_model(MODEL_ID, subject=1, selection={"roi": ["V1", "IT"]})
    images = _images(3)
    responses = berg.encode(model, images, show_progress=False)
    out = tmp_path / "responses.nii.gz"
    written = write_responses(
        model, as_stimulus(images), out, reference=reference, show_progress=False
    )
    assert written == [out]
    image = nib.load(out)
    np.testing.assert_allclose(image.affine, affine)
    data = np.asarray(image.dataobj)
    assert data.shape == (*shape, 3) and data.dtype == np.float32
    voxels = np.concatenate([metadata["roi"]["V1"], metadata["roi"]["IT"]])
    i, j, k = coords[voxels].T
    np.testing.assert_array_equal(data[i, j, k, :].T, responses)
    assert np.isnan(data).sum() == data.size - len(np.unique(voxels)) * 3

    with pytest.raises(InvalidParameterError, match="exist; pass --force"):
        write_responses(model, as_stimulus(images), out, show_progress=False)


def test_cli_writes_nifti_by_extension(berg, tmp_path):
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, _images(2))
    out = tmp_path / "full.nii"
    args = [
        "--berg-dir",
        str(berg.berg_dir),
        "encode",
        MODEL_ID,
        "--subject",
        "1",
        "--stimulus",
        str(stimulus),
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    data = np.asarray(nib.load(out).dataobj)
    assert data.shape[-1] == 2
    assert np.isfinite(data).sum() == N_VOXELS * 2  # full brain: every voxel predicted
    assert main([*args[:-5], "--out", str(tmp_path / "x.func.gii"), "--device", "cpu"]) == 2
